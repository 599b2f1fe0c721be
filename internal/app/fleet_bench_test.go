package app_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/sandbox"
)

// BenchmarkFleetSteadyPass measures a steady bulk pass (nothing due) over
// fleets of 1,000 and 10,000 tagged users, per user: bytes and allocations
// a pass makes (the in-process sandbox serving its bulk calls included),
// and the heap the engine keeps between passes (measured by dropping it).
// Flat per-user figures from 1,000 to 10,000 users are the daemon's memory
// staying proportional to the fleet, with no per-pass growth:
//
//	go test -run '^$' -bench FleetSteadyPass -benchtime 3x ./internal/app/
func BenchmarkFleetSteadyPass(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			h := newHarness(b, sandbox.Faults{})
			h.createTagged("fleet-", n)
			cfg := h.fleetConfig()
			cfg.Rotation.Concurrency = 32
			a := h.engine(cfg, nil)
			if sum := h.pass(a, keyrot.RunOptions{}); sum.Created != n {
				b.Fatalf("storm: %d created, want %d", sum.Created, n)
			}
			// Four hours on, a report newer than every rotation is in hand.
			h.clock.Advance(4*time.Hour + time.Minute)
			h.pass(a, keyrot.RunOptions{})
			h.events.Reset()

			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for b.Loop() {
				h.clock.Advance(time.Minute)
				if sum := h.pass(a, keyrot.RunOptions{}); sum.Bulk < n-n/100 || sum.Created+sum.Deactivated+sum.Deleted > 0 {
					b.Fatalf("steady pass: %d of %d users from bulk data, %d steps", sum.Bulk, n, sum.Created+sum.Deactivated+sum.Deleted)
				}
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			passes := float64(b.N) * float64(n)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/passes, "B/user-pass")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/passes, "allocs/user-pass")

			runtime.GC()
			runtime.ReadMemStats(&after)
			withEngine := after.HeapAlloc
			runtime.KeepAlive(a)
			a = nil
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(withEngine)-int64(after.HeapAlloc))/float64(n), "kept-B/user")
		})
	}
}
