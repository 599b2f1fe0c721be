package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/keyrot/keyrot/sandbox"
)

// rotationOps are the calls of a rotation whose response a phase may lose
// after they took effect; otherOps are the other calls that change state.
var (
	rotationOps = []string{"CreateAccessKey", "PutSecretValue", "UpdateSecretVersionStage", "TagResource", "UpdateAccessKey", "DeleteAccessKey"}
	otherOps    = []string{"UntagResource", "CreateSecret", "PutResourcePolicy", "SendEmail"}
)

// chaos changes the faults every 10-30 s and kills the processes at random
// until ctx ends. The two run side by side; the kills are serialised (one
// process down at a time, the next kill only once both are back), so a
// consumer never faces the engine and the sandbox down together.
func (w *world) chaos(ctx context.Context, rng *rand.Rand) {
	// Each loop gets its own generator from the seed, so the schedules do
	// not depend on how the two interleave.
	faultRNG := rand.New(rand.NewPCG(rng.Uint64(), 1))
	killRNG := rand.New(rand.NewPCG(rng.Uint64(), 2))
	var wg sync.WaitGroup
	wg.Go(func() { w.faultPhases(ctx, faultRNG) })
	if w.o.killEvery > 0 {
		wg.Go(func() { w.kills(ctx, killRNG) })
	}
	wg.Wait()
}

func (w *world) faultPhases(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		f, desc := w.drawPhase(rng)
		w.mu.Lock()
		w.phase = f
		w.phases++
		n := w.phases
		w.mu.Unlock()
		if err := w.applyFaults(ctx, f); err != nil && ctx.Err() == nil && w.sandbox.running() {
			fmt.Printf("chaos: phase %d: %v\n", n, err)
		}
		fmt.Printf("chaos: %s phase %d: %s\n", time.Now().UTC().Format("15:04:05"), n, desc)
		sleep(ctx, time.Duration(10+rng.IntN(21))*time.Second)
	}
}

// drawPhase draws a mix of faults: each kind is in with some probability,
// at a rate up to its knob; one phase in six is calm.
func (w *world) drawPhase(rng *rand.Rand) (sandbox.Faults, string) {
	o := w.o
	f := sandbox.Faults{PropagationDelay: baselinePropagation}
	var desc []string
	if rng.IntN(6) == 0 {
		return f, "calm"
	}
	if o.throttle > 0 && rng.Float64() < 0.5 {
		r := o.throttle * (0.2 + 0.8*rng.Float64())
		f.Rules = append(f.Rules, sandbox.FaultRule{Kind: sandbox.FaultThrottle, Rate: r})
		desc = append(desc, fmt.Sprintf("throttle %.2f", r))
	}
	if o.errors5xx > 0 && rng.Float64() < 0.4 {
		r := o.errors5xx * (0.2 + 0.8*rng.Float64())
		f.Rules = append(f.Rules, sandbox.FaultRule{Kind: sandbox.Fault5xx, Rate: r})
		desc = append(desc, fmt.Sprintf("5xx %.2f", r))
	}
	if o.lost > 0 && rng.Float64() < 0.5 {
		// Lost responses on one to three of a rotation's calls, and
		// sometimes on another call that changes state.
		ops := append([]string(nil), rotationOps...)
		rng.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		ops = ops[:1+rng.IntN(3)]
		if rng.IntN(3) == 0 {
			ops = append(ops, otherOps[rng.IntN(len(otherOps))])
		}
		r := o.lost * (0.3 + 0.7*rng.Float64())
		for _, op := range ops {
			f.Rules = append(f.Rules, sandbox.FaultRule{Operation: op, Kind: sandbox.FaultLostResponse, Rate: r})
		}
		desc = append(desc, fmt.Sprintf("lost %.2f on %s", r, strings.Join(ops, ",")))
	}
	if o.latency > 0 && rng.Float64() < 0.3 {
		f.Latency = time.Duration(rng.Int64N(int64(o.latency)))
		desc = append(desc, "latency "+f.Latency.Round(time.Millisecond).String())
	}
	if o.propagation > baselinePropagation && rng.Float64() < 0.5 {
		f.PropagationDelay = baselinePropagation + time.Duration(rng.Int64N(int64(o.propagation-baselinePropagation)+1))
		desc = append(desc, "propagation "+f.PropagationDelay.Round(time.Second).String())
	}
	if len(desc) == 0 {
		return f, "calm"
	}
	return f, strings.Join(desc, ", ")
}

// kills kills a process every killEvery on average (exponential gaps, at
// least 2 s): the engine at a random moment, the engine right after one of
// its steps began, the engine twice within its first seconds, or the
// sandbox (restarted on its data).
func (w *world) kills(ctx context.Context, rng *rand.Rand) {
	for {
		gap := max(2*time.Second, time.Duration(rng.ExpFloat64()*float64(w.o.killEvery)))
		sleep(ctx, gap)
		if ctx.Err() != nil {
			return
		}
		down := time.Duration(100+rng.IntN(1400)) * time.Millisecond
		var what string
		var err error
		killed := time.Now()
		switch n := rng.IntN(20); {
		case n < 8:
			what = "engine"
			err = w.killEngine(ctx, down)
		case n < 12:
			what = "engine mid-step"
			select {
			case <-w.steps: // drop a stale signal
			default:
			}
			select {
			case <-w.steps:
				sleep(ctx, time.Duration(rng.IntN(400))*time.Millisecond)
			case <-time.After(30 * time.Second):
				what = "engine (no step began within 30 s)"
			case <-ctx.Done():
				return
			}
			killed = time.Now()
			err = w.killEngine(ctx, down)
		case n < 15:
			what = "engine twice, right after start"
			down = time.Duration(100+rng.IntN(400)) * time.Millisecond
			if err = w.killEngine(ctx, down); err == nil {
				sleep(ctx, time.Duration(50+rng.IntN(950))*time.Millisecond)
				err = w.killEngine(ctx, down)
			}
		default:
			what = "sandbox"
			down = time.Duration(300+rng.IntN(3700)) * time.Millisecond
			err = w.killSandbox(ctx, down)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			fmt.Printf("chaos: kill %s: restart: %v\n", what, err)
		}
		// Both back before the next kill: one outage at a time.
		if err := w.engineReady(ctx, 2*time.Minute); err != nil && ctx.Err() == nil {
			fmt.Printf("chaos: after kill %s the API is not ready: %v\n", what, err)
		}
		outage := time.Since(killed)
		if what != "sandbox" {
			w.mu.Lock()
			w.apiOutages = append(w.apiOutages, outage)
			w.mu.Unlock()
		}
		fmt.Printf("chaos: %s killed %s (down %s, back after %s)\n", time.Now().UTC().Format("15:04:05"), what, down.Round(time.Millisecond), outage.Round(time.Millisecond))
	}
}
