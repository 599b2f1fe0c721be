package app_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// BenchmarkFleetSteadyPass measures a steady bulk pass (nothing due) over
// fleets of 1,000 and 10,000 tagged users, per user: the bytes and
// allocations a pass makes in keyrot's process, and the heap the engine
// keeps between passes (measured by dropping it). The sandbox runs in a
// process of its own, so that its work on the bulk calls is not counted.
// Per-user figures flat from 1,000 to 10,000 users are the daemon's memory
// staying proportional to the fleet, with nothing that grows faster:
//
//	go test -run '^$' -bench FleetSteadyPass -benchtime 3x ./internal/app/
func BenchmarkFleetSteadyPass(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			url, _ := sandboxtest.StartProcess(b)
			awsCfg := sandboxtest.EndpointConfig(url, "test", "test")
			// On the wall clock, as the sandbox's process is.
			h := &harness{t: b, aws: awsCfg, iam: awsiam.NewFromConfig(awsCfg), events: &mock.Notifier{}, foreign: map[string]bool{}, unit: time.Minute}
			h.createTagged("fleet-", n)
			cfg := h.fleetConfig()
			cfg.Rotation.Concurrency = 32
			a := h.engine(cfg, nil)
			if sum := h.pass(a, keyrot.RunOptions{}); sum.Created != n {
				b.Fatalf("storm: %d created, want %d", sum.Created, n)
			}
			h.events.Reset()

			steady := func() {
				if sum := h.pass(a, keyrot.RunOptions{}); sum.Bulk < n-n/100 || sum.Created+sum.Deactivated+sum.Deleted > 0 {
					b.Fatalf("steady pass: %d of %d users from bulk data, %d steps", sum.Bulk, n, sum.Created+sum.Deactivated+sum.Deleted)
				}
			}
			steady() // the first after the storm settles what the storm left
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for b.Loop() {
				steady()
			}
			b.StopTimer()
			runtime.ReadMemStats(&after)
			passes := float64(b.N) * float64(n)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/passes, "B/user-pass")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/passes, "allocs/user-pass")
			b.ReportMetric(float64(keptBy(func() { a = nil }))/float64(n), "kept-B/user")
		})
	}
}

// keptBy is how much the live heap shrinks when drop runs (dropping the
// only reference to something).
func keptBy(drop func()) int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	with := m.HeapAlloc
	drop()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(with) - int64(m.HeapAlloc)
}
