// Command fleet measures keyrot's bulk observation on a fleet in the
// sandbox (bench/fleet.sh): N tagged users behind a per-call latency and
// the IAM rate limit; a rotation storm (every user due at once) for a
// window, then steady passes (nothing due), warm (the same process) and
// cold (a new engine, as a Lambda cold start). It prints calls per pass
// from the sandbox's counter, rotations per second against the bound the
// IAM rate allows, and the process's peak RSS (engine and sandbox together).
//
//	fleet -users 1000 -latency 30ms -iam-rate 10 -storm 60s
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run() error {
	users := flag.Int("users", 1000, "tagged IAM users")
	latency := flag.Duration("latency", 30*time.Millisecond, "latency added to every AWS call")
	iamRate := flag.Float64("iam-rate", 10, "rotation.iam_rate")
	concurrency := flag.Int("concurrency", 32, "rotation.concurrency")
	storm := flag.Duration("storm", 60*time.Second, "how long the rotation storm runs (the rest is left, as a Lambda would)")
	flag.Parse()
	ctx := context.Background()

	clock := &offsetClock{}
	sb, err := sandbox.New(sandbox.Options{Seed: 1, Clock: clock})
	if err != nil {
		return err
	}
	if err := sb.Start(ctx, "127.0.0.1:0"); err != nil {
		return err
	}
	defer sb.Close(ctx)
	awsCfg := sandboxtest.EndpointConfig(sb.URL(), "test", "test")
	client := awsiam.NewFromConfig(awsCfg)
	if err := seed(ctx, client, *users); err != nil {
		return err
	}
	sb.SetFaults(sandbox.Faults{Latency: *latency})

	cfg := config.Default()
	cfg.Users.Tag = "keyrot"
	cfg.Notify.Via = "log"
	r := &cfg.Rotation
	r.RotateEvery, r.DeactivateAfter, r.DeleteAfter = config.Duration(90*24*time.Hour), config.Duration(7*24*time.Hour), config.Duration(7*24*time.Hour)
	r.BulkObserve, r.IAMRate, r.Concurrency = true, *iamRate, *concurrency
	engine := func() (*app.App, error) {
		return app.New(ctx, cfg, app.Options{AWS: &awsCfg})
	}
	a, err := engine()
	if err != nil {
		return err
	}
	fmt.Printf("users %d, latency %s, iam_rate %g, concurrency %d, GOMAXPROCS %d\n", *users, *latency, *iamRate, *concurrency, runtime.GOMAXPROCS(0))

	// The storm: every user is due (none has a key yet).
	sb.ResetCalls()
	stormCtx, cancel := context.WithTimeout(ctx, *storm)
	start := time.Now()
	sum, err := a.Rotator.ReconcileAll(stormCtx, keyrot.RunOptions{})
	cancel()
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("storm pass: %w", err)
	}
	calls := sb.Calls()
	iamN, smN := split(calls)
	perRotation := float64(iamN) / float64(max(1, sum.Created))
	rate := float64(sum.Created) / took.Seconds()
	bound := *iamRate / perRotation
	fmt.Printf("storm: %d rotations in %.1fs (%d deferred, %d failed): %.2f rotations/s; %.1f IAM calls a rotation, so iam_rate allows %.2f/s: %.2f of the bound; %d Secrets Manager calls\n",
		sum.Created, took.Seconds(), sum.Deferred, sum.Failed, rate, perRotation, bound, rate/bound, smN)

	// Finish the storm without the limit, so the steady passes have nothing due.
	if sum.Deferred > 0 {
		sb.SetFaults(sandbox.Faults{})
		cfgFast := cfg
		cfgFast.Rotation.IAMRate = 100000
		fast, err := app.New(ctx, cfgFast, app.Options{AWS: &awsCfg})
		if err != nil {
			return err
		}
		if _, err := fast.Rotator.ReconcileAll(ctx, keyrot.RunOptions{}); err != nil {
			return err
		}
		sb.SetFaults(sandbox.Faults{Latency: *latency})
	}

	for i, label := range []string{"first pass after the storm (this engine did not finish it: users observed in full once)", "warm steady pass (keys known from this engine's observations)", "cold steady pass (new engine: keys from the credential report)"} {
		if i == 2 {
			if a, err = engine(); err != nil {
				return err
			}
			// Four hours on (for the sandbox), a report is generated after
			// every rotation.
			clock.skip(4*time.Hour + time.Minute)
			if err := freshReport(ctx, client); err != nil {
				return err
			}
		}
		sb.ResetCalls()
		start := time.Now()
		sum, err := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{})
		took := time.Since(start)
		if err != nil {
			return err
		}
		iamN, smN := split(sb.Calls())
		fmt.Printf("%s: %.2fs, %d bulk of %d users, %d IAM + %d Secrets Manager calls (%.4f a user): %v\n",
			label, took.Seconds(), sum.Bulk, sum.Users, iamN, smN, float64(iamN+smN)/float64(sum.Users), brief(sb.Calls()))
	}
	fmt.Printf("peak RSS (engine and sandbox in one process): %s\n", peakRSS())
	return nil
}

func seed(ctx context.Context, c *awsiam.Client, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := c.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String(fmt.Sprintf("fleet-%05d", i)),
				Tags: []iamtypes.Tag{{Key: aws.String("keyrot"), Value: aws.String("on")}}})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// offsetClock is the wall clock plus an offset the program moves forward,
// so the sandbox's four-hour report rule passes in no time.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) skip(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// freshReport has the sandbox generate a credential report now.
func freshReport(ctx context.Context, c *awsiam.Client) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.GenerateCredentialReport(ctx, &awsiam.GenerateCredentialReportInput{})
		if err == nil && out.State == iamtypes.ReportStateTypeComplete {
			return nil
		}
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("no fresh credential report")
}

func split(calls map[string]int64) (iamN, smN int64) {
	for op, n := range calls {
		switch {
		case strings.HasPrefix(op, "iam:"):
			iamN += n
		case strings.HasPrefix(op, "secretsmanager:"):
			smN += n
		}
	}
	return iamN, smN
}

func brief(calls map[string]int64) string {
	var parts []string
	for op, n := range calls {
		parts = append(parts, fmt.Sprintf("%s=%d", op, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func peakRSS() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
