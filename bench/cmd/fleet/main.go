// Command fleet measures keyrot's bulk observation on a fleet in the
// sandbox (bench/fleet.sh): N tagged users behind a per-call latency and
// the IAM rate limit; a rotation storm (every user due at once) for a
// window, then steady passes (nothing due), warm (the same process) and
// cold (a new engine, as a Lambda cold start). It prints calls per pass
// from the sandbox's counter (GET /_sandbox/calls), rotations per second
// against the bound the IAM rate allows, and peak RSS. The sandbox runs in
// a child process (this program with -serve-sandbox), so the peak RSS of
// this process is keyrot's engine alone.
//
//	fleet -users 1000 -latency 30ms -iam-rate 10 -storm 60s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
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
	storm := flag.Duration("storm", 60*time.Second, "how long the rotation storm runs (the rest is left, as a Lambda would, then finished without the limit)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the steady passes here")
	memProfile := flag.String("memprofile", "", "write a heap profile here after the passes")
	serve := flag.Bool("serve-sandbox", false, "run only the sandbox (the child process) and print its URL")
	flag.Parse()
	if *serve {
		return serveSandbox()
	}
	ctx := context.Background()

	sb, err := startSandbox(ctx)
	if err != nil {
		return err
	}
	defer sb.stop()
	awsCfg := sandboxtest.EndpointConfig(sb.url, "test", "test")
	client := awsiam.NewFromConfig(awsCfg)
	if err := seed(ctx, client, *users); err != nil {
		return err
	}
	if err := sb.setLatency(*latency); err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Users.Tag = "keyrot"
	cfg.Notify.Via = "log"
	r := &cfg.Rotation
	r.RotateEvery, r.DeactivateAfter, r.DeleteAfter = config.Duration(90*24*time.Hour), config.Duration(7*24*time.Hour), config.Duration(7*24*time.Hour)
	r.BulkObserve, r.IAMRate, r.Concurrency = true, *iamRate, *concurrency
	var a *app.App
	// engine replaces a with a new engine; the old one's undelivered emails
	// (a storm queues thousands behind notify.send_rate) are abandoned.
	engine := func(cfg config.Config) error {
		if a != nil {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = a.Close(cctx)
			cancel()
		}
		var err error
		a, err = app.New(ctx, cfg, app.Options{AWS: &awsCfg})
		return err
	}
	if err := engine(cfg); err != nil {
		return err
	}
	fmt.Printf("users %d, latency %s, iam_rate %g, concurrency %d, GOMAXPROCS %d, sandbox in process %d\n", *users, *latency, *iamRate, *concurrency, runtime.GOMAXPROCS(0), sb.cmd.Process.Pid)

	// The storm: every user is due (none has a key yet).
	if err := sb.resetCalls(); err != nil {
		return err
	}
	stormCtx, cancel := context.WithTimeout(ctx, *storm)
	start := time.Now()
	sum, err := a.Rotator.ReconcileAll(stormCtx, keyrot.RunOptions{})
	cancel()
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("storm pass: %w", err)
	}
	calls, err := sb.calls()
	if err != nil {
		return err
	}
	iamN, smN := split(calls)
	perRotation := float64(iamN) / float64(max(1, sum.Created))
	rate := float64(sum.Created) / took.Seconds()
	bound := *iamRate / perRotation
	fmt.Printf("storm: %d rotations in %.1fs (%d deferred, %d failed): %.2f rotations/s; %.2f IAM calls a rotation, so iam_rate allows %.2f/s: %.2f of the bound; %d Secrets Manager calls; peak RSS so far %s\n",
		sum.Created, took.Seconds(), sum.Deferred, sum.Failed, rate, perRotation, bound, rate/bound, smN, peakRSS("self"))
	sum = keyrot.Summary{}

	// Finish the storm without the limit or the latency, on another engine
	// that then runs the steady passes with every user observed once.
	if err := sb.setLatency(0); err != nil {
		return err
	}
	fastCfg := cfg
	fastCfg.Rotation.IAMRate = 100000
	if err := engine(fastCfg); err != nil {
		return err
	}
	start = time.Now()
	if sum, err = a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{}); err != nil {
		return err
	}
	fmt.Printf("rest of the storm (no limit, no latency): %d rotations in %.1fs, %d failed; peak RSS so far %s\n", sum.Created, time.Since(start).Seconds(), sum.Failed, peakRSS("self"))
	sum = keyrot.Summary{}
	// The unlimited finish is this benchmark's shortcut, not something a
	// deployment does: the steady passes' peak is measured from here on.
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		fmt.Printf("cannot reset the peak RSS (%v): the figures below include the finish\n", err)
	}
	if err := sb.setLatency(*latency); err != nil {
		return err
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	for i, label := range []string{"warm steady pass (keys known from this engine's observations)", "cold steady pass (new engine: keys from the credential report)"} {
		if i == 1 {
			if err := engine(cfg); err != nil {
				return err
			}
			// Four hours on (for the sandbox), a report is generated after
			// every rotation.
			if err := sb.skip(4*time.Hour + time.Minute); err != nil {
				return err
			}
			if err := freshReport(ctx, client); err != nil {
				return err
			}
		}
		if err := sb.resetCalls(); err != nil {
			return err
		}
		start, selfCPU, sbCPU := time.Now(), cpuTime("self"), cpuTime(strconv.Itoa(sb.cmd.Process.Pid))
		sum, err := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{})
		took := time.Since(start)
		selfCPU, sbCPU = cpuTime("self")-selfCPU, cpuTime(strconv.Itoa(sb.cmd.Process.Pid))-sbCPU
		if err != nil {
			return err
		}
		calls, err := sb.calls()
		if err != nil {
			return err
		}
		iamN, smN := split(calls)
		fmt.Printf("%s: %.2fs (CPU: keyrot %.2fs, sandbox %.2fs), %d bulk of %d users, %d IAM + %d Secrets Manager calls (%.4f a user): %v; peak RSS since the finish %s\n",
			label, took.Seconds(), selfCPU.Seconds(), sbCPU.Seconds(), sum.Bulk, sum.Users, iamN, smN, float64(iamN+smN)/float64(sum.Users), brief(calls), peakRSS("self"))
	}
	pprof.StopCPUProfile()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return err
		}
	}
	fmt.Printf("keyrot alone: peak RSS since the finish %s, heap in use after the passes %.1f MB; the sandbox's process: peak RSS %s\n",
		peakRSS("self"), float64(ms.HeapInuse)/1e6, peakRSS(strconv.Itoa(sb.cmd.Process.Pid)))
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("write heap profile: %w", err)
	}
	return f.Close()
}

// childSandbox is the sandbox in its own process, driven over HTTP.
type childSandbox struct {
	cmd   *exec.Cmd
	stdin io.Closer
	url   string
}

// startSandbox starts this program with -serve-sandbox and reads the URL it prints.
func startSandbox(ctx context.Context) (*childSandbox, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-serve-sandbox")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // closed when this process ends, however it ends
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the sandbox: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("read the sandbox's URL: %w", err)
	}
	return &childSandbox{cmd: cmd, stdin: stdin, url: strings.TrimSpace(line)}, nil
}

func (c *childSandbox) stop() {
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

func (c *childSandbox) do(method, path string, body any, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if into != nil {
		return json.NewDecoder(resp.Body).Decode(into)
	}
	return nil
}

func (c *childSandbox) setLatency(d time.Duration) error {
	return c.do(http.MethodPost, "/_sandbox/faults", sandbox.Faults{Latency: d}, nil)
}

func (c *childSandbox) calls() (map[string]int64, error) {
	var calls map[string]int64
	return calls, c.do(http.MethodGet, "/_sandbox/calls", nil, &calls)
}

func (c *childSandbox) resetCalls() error {
	return c.do(http.MethodDelete, "/_sandbox/calls", nil, nil)
}

func (c *childSandbox) skip(d time.Duration) error {
	return c.do(http.MethodPost, "/_bench/skip?by="+d.String(), nil, nil)
}

// serveSandbox is the child: the sandbox on a clock POST /_bench/skip?by=4h
// moves forward (so the four-hour report rule passes in no time), on a
// free loopback port it prints; it ends when its stdin closes (the parent
// ended).
func serveSandbox() error {
	clock := &offsetClock{}
	sb, err := sandbox.New(sandbox.Options{Seed: 1, Clock: clock})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", sb)
	mux.HandleFunc("POST /_bench/skip", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("by"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		clock.skip(d)
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("http://%s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
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

// offsetClock is the wall clock plus an offset the program moves forward.
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

// cpuTime is the user and system CPU time a process ("self" or a pid) has
// used, from /proc/<pid>/stat (0 if unreadable).
func cpuTime(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces), from the state on:
	// utime and stime are the 12th and 13th, in clock ticks (100 a second).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS is a process's VmHWM ("self" or a pid).
func peakRSS(pid string) string {
	f, err := os.Open("/proc/" + pid + "/status")
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
