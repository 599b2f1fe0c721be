// Command chaos runs keyrot through faults and kill -9s and checks that it
// keeps its guarantees (docs/reliability.md). It starts `keyrot sandbox
// --data DIR` and `keyrot run` as child processes, seeds IAM users (some
// with keys keyrot did not create), and for -duration injects faults that
// change over time (throttling, 5xx, latency, propagation delay, lost
// responses after commit), kills the engine and the sandbox with SIGKILL at
// random moments and restarts them, while consumers sign STS calls
// continuously with the keys keyrot hands out (credential_process through
// the API with the AWS SDK for Go and boto3, and `keyrot credentials
// --direct`). A watcher checks the invariants every second. Then the faults
// stop for -heal and the end state is checked. The last line is
//
//	chaos: user_cycles=N kills=K faults=F consumer_calls=C consumer_failures=0 lost_keys=0 stranded_users=0 leaks=0
//
// and the exit status is 1 if any loss figure is not 0 or any invariant was
// broken. bench/chaos.sh builds keyrot and runs this.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if !r.ok() {
		os.Exit(1)
	}
}

// options are the run's knobs (bench/chaos.sh maps its environment to them).
type options struct {
	keyrot   string // the keyrot binary
	work     string // directory for the sandbox's data, config, logs, caches
	users    int
	duration time.Duration // chaos: faults and kills
	heal     time.Duration // no faults, no kills, then the end checks
	seed     uint64

	throttle, errors5xx, lost float64       // highest fault rates a phase draws
	latency, propagation      time.Duration // highest latency and propagation delay a phase draws
	killEvery                 time.Duration // mean time between kills; 0: none
	boto3                     bool          // also run a boto3 consumer (python3 with boto3)
	sabotage                  bool          // break the guarantees on purpose half way, to show the checks catch it
	rev                       string        // the keyrot revision under test, for the record

	rotateEvery, deactivateAfter, deleteAfter, resync, orphanGrace time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&o.keyrot, "keyrot", "", "keyrot binary (required)")
	fs.StringVar(&o.work, "work", "", "work directory (default: a new temporary one, kept)")
	fs.IntVar(&o.users, "users", 6, "IAM users")
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long faults and kills go on")
	fs.DurationVar(&o.heal, "heal", 0, "healing period without faults before the end checks (default: enough for a full cycle)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the fault and kill schedule and of the sandbox")
	fs.Float64Var(&o.throttle, "throttle", 0.2, "highest rate of throttled AWS calls in a phase")
	fs.Float64Var(&o.errors5xx, "errors", 0.1, "highest rate of AWS calls answered with a 5xx in a phase")
	fs.Float64Var(&o.lost, "lost", 0.15, "highest rate of lost responses (the call takes effect, the client gets a 5xx) on calls that change state")
	fs.DurationVar(&o.latency, "latency", 300*time.Millisecond, "highest latency added to every AWS call in a phase")
	fs.DurationVar(&o.propagation, "propagation", 30*time.Second, "highest IAM propagation delay for new keys in a phase")
	fs.DurationVar(&o.killEvery, "kill-every", 15*time.Second, "mean time between kill -9s (0: no kills)")
	fs.BoolVar(&o.boto3, "boto3", true, "run a boto3 consumer too, if python3 can import boto3")
	fs.StringVar(&o.rev, "rev", "", "the keyrot revision under test (printed with the figures)")
	fs.BoolVar(&o.sabotage, "sabotage", false, "half way, deactivate a user's current key behind keyrot's back and write a secret into a log: the run must fail")
	fs.DurationVar(&o.rotateEvery, "rotate-every", 20*time.Second, "rotation.rotate_every")
	fs.DurationVar(&o.deactivateAfter, "deactivate-after", 12*time.Second, "rotation.deactivate_after")
	fs.DurationVar(&o.deleteAfter, "delete-after", 5*time.Second, "rotation.delete_after")
	fs.DurationVar(&o.resync, "resync", 2*time.Second, "rotation.resync")
	fs.DurationVar(&o.orphanGrace, "orphan-grace", 20*time.Second, "rotation.orphan_grace")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.keyrot == "":
		return o, errors.New("-keyrot is required")
	case o.users < 1:
		return o, errors.New("-users must be at least 1")
	case o.deactivateAfter+o.deleteAfter >= o.rotateEvery:
		return o, errors.New("-deactivate-after + -delete-after must be less than -rotate-every")
	}
	if o.heal == 0 {
		// Time for a key given up at the last moment to be adopted and
		// rotated out, and for every user to rotate once more.
		o.heal = max(time.Minute, o.orphanGrace+o.deactivateAfter+o.deleteAfter+o.rotateEvery+4*o.resync)
	}
	abs, err := filepath.Abs(o.keyrot)
	if err != nil {
		return o, err
	}
	o.keyrot = abs
	if o.work == "" {
		if o.work, err = os.MkdirTemp("", "keyrot-chaos-"); err != nil {
			return o, err
		}
	}
	return o, os.MkdirAll(o.work, 0o700)
}

// verifyTimeout is above the longest propagation delay a phase can draw,
// so a key always has the time to verify.
func (o options) verifyTimeout() time.Duration { return o.propagation + 15*time.Second }

// run is the whole chaos run.
func run(ctx context.Context, o options) (*report, error) {
	rng := rand.New(rand.NewPCG(o.seed, 0xc4a05))
	fmt.Printf("chaos: keyrot %s, %d users, %s of faults and kills, %s to heal, seed %d, work dir %s\n", o.rev, o.users, o.duration, o.heal, o.seed, o.work)
	fmt.Printf("chaos: rotate_every %s, deactivate_after %s, delete_after %s, verify_timeout %s; faults up to throttle %.2f, 5xx %.2f, lost %.2f, latency %s, propagation %s; a kill every %s on average\n",
		o.rotateEvery, o.deactivateAfter, o.deleteAfter, o.verifyTimeout(), o.throttle, o.errors5xx, o.lost, o.latency, o.propagation, o.killEvery)

	w, err := newWorld(ctx, o)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	if err := w.setup(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The watcher sees everything from before keyrot's first pass.
	watch := newWatcher(w)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); watch.run(runCtx) }()
	side := w.startSideChecks(runCtx)
	if err := w.bootstrap(ctx); err != nil {
		return nil, err
	}
	consumers := startConsumers(runCtx, w)
	defer consumers.kill() // on an early return: no python3 left behind

	start := time.Now()
	chaosCtx, endChaos := context.WithTimeout(runCtx, o.duration)
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		w.chaos(chaosCtx, rng)
	}()
	go w.progress(chaosCtx, watch, consumers, start)
	if o.sabotage {
		go w.sabotage(chaosCtx, o.duration/2)
	}
	<-chaosDone
	endChaos()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	fmt.Printf("chaos: %s of chaos over; faults off, %s to heal\n", time.Since(start).Round(time.Second), o.heal)
	if err := w.heal(ctx); err != nil {
		return nil, err
	}
	healStart := time.Now()
	watch.markHeal(healStart)
	consumers.markHeal(healStart)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(o.heal):
	}

	r := &report{}
	watch.endChecks(ctx, r, healStart)
	cancel()
	<-watchDone
	consumers.wait(r)
	side.wait()
	w.stopProcesses()
	w.finalChecks(ctx, r, watch)
	r.print(os.Stdout)
	return r, nil
}
