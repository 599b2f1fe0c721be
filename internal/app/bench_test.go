package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/sandbox"
)

// BenchmarkSteadyPass is a daemon's resync: a pass over 100 users with
// nothing due (observe and plan only), through the SDK to the sandbox.
func BenchmarkSteadyPass(b *testing.B) {
	h := newHarness(b, sandbox.Faults{})
	var users []string
	for i := range 100 {
		name := fmt.Sprintf("svc-%03d", i)
		users = append(users, name)
		h.createUser(name, 0)
	}
	cfg := h.config(users...)
	cfg.Rotation.Concurrency = 16
	a := h.engine(cfg, nil)
	if _, err := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		sum, err := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{})
		if err != nil || sum.Failed > 0 || sum.Created > 0 {
			b.Fatalf("pass: %+v, %v", sum, err)
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "users/s")
}

// BenchmarkRotationCycle is one whole cycle of the seed's timings for one
// user: create, store, verify and promote a key, then deactivate and delete
// its predecessor, through the SDK to the sandbox on its driven clock.
func BenchmarkRotationCycle(b *testing.B) {
	h := newHarness(b, sandbox.Faults{})
	h.createUser("ci-bot", 0)
	a := h.engine(h.config("ci-bot"), nil)
	h.runUntil(a, t0.Add(5*time.Minute))
	before := h.events.Count(keyrot.EventKeyCreated)
	for b.Loop() {
		h.runUntil(a, h.clock.Now().Add(5*time.Minute))
	}
	if got := h.events.Count(keyrot.EventKeyCreated) - before; got < b.N-1 {
		b.Fatalf("%d rotations in %d cycles", got, b.N)
	}
}
