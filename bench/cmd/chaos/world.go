package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/sandbox"
)

// The sandbox's admin key: a test double's, never a real one.
const (
	adminKeyID  = "test"
	adminSecret = "test"
	region      = "us-east-1"
	prefix      = "iam-key-rotation/"
)

// world is everything the run starts and shares: the two processes, the
// users, and what the side checks collect.
type world struct {
	o          options
	sandboxURL string
	apiURL     string
	apiKey     string
	cfgPath    string
	users      []string
	http       *http.Client

	sandbox, engine *proc

	iam *iam.Client            // admin, patient: gets through injected faults
	sm  *secretsmanager.Client // admin, patient

	mu          sync.Mutex
	unmanaged   map[string]string // key id -> user: keys made before keyrot ran
	secrets     map[string]string // every secret access key the sandbox issued, by key id
	keyUser     map[string]string // key id -> user
	engineKills int
	sbKills     int
	phases      int
	faultsBase  sandbox.FaultCounts // faults injected by sandbox lives already ended
	faultsLive  sandbox.FaultCounts // the running sandbox's count at the last poll
	phase       sandbox.Faults      // the faults in force
	apiOutages  []time.Duration     // from each engine kill to the API's /readyz
	emails      map[string]sandbox.Email
	steps       chan struct{} // a signal per "step" line the engine logs
}

func newWorld(ctx context.Context, o options) (*world, error) {
	sbPort, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	apiKey, _, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		return nil, err
	}
	w := &world{
		o:          o,
		sandboxURL: fmt.Sprintf("http://127.0.0.1:%d", sbPort),
		apiURL:     fmt.Sprintf("http://127.0.0.1:%d", apiPort),
		apiKey:     apiKey,
		http:       &http.Client{Timeout: 20 * time.Second},
		unmanaged:  map[string]string{},
		secrets:    map[string]string{},
		keyUser:    map[string]string{},
		faultsBase: sandbox.FaultCounts{},
		faultsLive: sandbox.FaultCounts{},
		emails:     map[string]sandbox.Email{},
		steps:      make(chan struct{}, 1),
		phase:      sandbox.Faults{PropagationDelay: baselinePropagation},
	}
	for i := range o.users {
		w.users = append(w.users, fmt.Sprintf("chaos-%02d", i+1))
	}
	for _, d := range []string{"logs", "scrapes", "cache"} {
		if err := os.MkdirAll(filepath.Join(o.work, d), 0o700); err != nil {
			return nil, err
		}
	}
	awsCfg := w.adminConfig()
	w.iam = iam.NewFromConfig(awsCfg)
	w.sm = secretsmanager.NewFromConfig(awsCfg)

	w.sandbox = &proc{name: "sandbox", bin: o.keyrot, logDir: filepath.Join(o.work, "logs"),
		args: []string{"sandbox", "--listen", fmt.Sprintf("127.0.0.1:%d", sbPort), "--data", filepath.Join(o.work, "sandbox-data"),
			"--seed", fmt.Sprint(o.seed), "--ses-rate", "0", "--access-key-id", adminKeyID, "--secret-access-key", adminSecret},
		env: cleanEnv()}
	w.cfgPath = filepath.Join(o.work, "keyrot.yaml")
	if err := os.WriteFile(w.cfgPath, []byte(w.config(apiPort)), 0o600); err != nil {
		return nil, err
	}
	w.engine = &proc{name: "engine", bin: o.keyrot, logDir: filepath.Join(o.work, "logs"),
		args: []string{"run", "--config", w.cfgPath},
		env:  append(w.awsEnv(), "API_KEY="+apiKey, "LOG_LEVEL=debug"),
		onLine: func(line string) {
			if strings.Contains(line, `"msg":"step"`) {
				select {
				case w.steps <- struct{}{}:
				default:
				}
			}
		}}
	return w, nil
}

// baselinePropagation is IAM's usual delay for a new key, in force when no
// phase draws a longer one.
const baselinePropagation = 2 * time.Second

// config is keyrot's configuration for the run: short timings, email
// through the sandbox's SES, the API on apiPort, debug logs.
func (w *world) config(apiPort int) string {
	o := w.o
	return fmt.Sprintf(`users:
  names: [%s]
rotation:
  rotate_every: %s
  deactivate_after: %s
  delete_after: %s
  verify_timeout: %s
  orphan_grace: %s
  resync: %s
  unmanaged_keys: adopt
  concurrency: 16
  iam_rate: 100
notify:
  via: ses
  sender: keyrot@example.com
  admin: security@example.com
  api_url: %s
  quiet_period: 1h
  send_rate: 50
api:
  listen: 127.0.0.1:%d
  refresh: %s
log:
  format: json
  level: debug
`, strings.Join(w.users, ", "), secs(o.rotateEvery), secs(o.deactivateAfter), secs(o.deleteAfter), secs(o.verifyTimeout()),
		secs(o.orphanGrace), secs(o.resync), w.apiURL, apiPort, secs(max(time.Second, o.deactivateAfter/4)))
}

func secs(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second)) }

// cleanEnv is the environment without AWS settings, so nothing reaches a
// real account.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "KEYROT_") && !strings.HasPrefix(kv, "API_KEY=") && !strings.HasPrefix(kv, "LOG_LEVEL=") {
			env = append(env, kv)
		}
	}
	return env
}

// awsEnv points the AWS SDK's standard chain at the sandbox, as admin.
func (w *world) awsEnv() []string {
	return append(cleanEnv(), "AWS_ENDPOINT_URL="+w.sandboxURL, "AWS_REGION="+region,
		"AWS_ACCESS_KEY_ID="+adminKeyID, "AWS_SECRET_ACCESS_KEY="+adminSecret,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
}

// adminConfig is the watcher's AWS config: admin, and patient enough to
// get through the faults it shares with keyrot (it is not under test).
func (w *world) adminConfig() aws.Config {
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(w.sandboxURL),
		Credentials:  credentials.NewStaticCredentialsProvider(adminKeyID, adminSecret, ""),
		HTTPClient:   &http.Client{Timeout: 15 * time.Second},
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 8
				o.MaxBackoff = 300 * time.Millisecond
				o.RateLimiter = ratelimit.None
			})
		},
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// setup starts the sandbox and seeds the users.
func (w *world) setup(ctx context.Context) error {
	if err := w.startSandbox(ctx); err != nil {
		return err
	}
	return w.seedUsers(ctx)
}

// bootstrap starts the engine and waits until every user has a current
// key the API serves.
func (w *world) bootstrap(ctx context.Context) error {
	if err := w.startEngine(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for _, u := range w.users {
		for {
			ptr, err := readPointer(ctx, w.sm, u)
			if err == nil && ptr.key != "" {
				if id, err := w.apiKeyID(ctx, u); err == nil && id == ptr.key {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bootstrap: user %s has no current key the API serves after 3 minutes (see %s)", u, w.engine.logDir)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	fmt.Printf("chaos: %d users have a current key; %d keys keyrot did not create were there before it\n", len(w.users), len(w.unmanaged))
	return nil
}

// seedUsers makes the IAM users: every third one with one key of its own,
// every third with two (keyrot adopts them: rotates them out), and an owner
// tag on every other one.
func (w *world) seedUsers(ctx context.Context) error {
	for i, u := range w.users {
		in := &iam.CreateUserInput{UserName: aws.String(u)}
		if i%2 == 0 {
			in.Tags = []iamtypes.Tag{{Key: aws.String("keyrot:owner"), Value: aws.String(u + "-owner@example.com")}}
		}
		if _, err := w.iam.CreateUser(ctx, in); err != nil {
			return fmt.Errorf("seed: create user %s: %w", u, err)
		}
		for range i % 3 {
			out, err := w.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(u)})
			if err != nil {
				return fmt.Errorf("seed: create key for %s: %w", u, err)
			}
			id := aws.ToString(out.AccessKey.AccessKeyId)
			w.mu.Lock()
			w.unmanaged[id] = u
			w.secrets[id] = aws.ToString(out.AccessKey.SecretAccessKey)
			w.keyUser[id] = u
			w.mu.Unlock()
		}
	}
	return nil
}

func (w *world) startSandbox(ctx context.Context) error {
	if err := w.sandbox.start(); err != nil {
		return err
	}
	if err := waitHTTP(ctx, w.http, w.sandboxURL+"/_sandbox/healthz", 30*time.Second); err != nil {
		return fmt.Errorf("sandbox did not come up: %w (log: %s)", err, w.sandbox.logFile())
	}
	w.mu.Lock()
	phase := w.phase
	w.mu.Unlock()
	return w.applyFaults(ctx, phase)
}

func (w *world) startEngine(ctx context.Context) error {
	if err := w.engine.start(); err != nil {
		return err
	}
	return nil
}

// engineReady waits until the API answers /readyz (its cache is loaded).
func (w *world) engineReady(ctx context.Context, within time.Duration) error {
	return waitHTTP(ctx, w.http, w.apiURL+"/readyz", within)
}

func waitHTTP(ctx context.Context, c *http.Client, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: %w", url, last)
}

// applyFaults sets the sandbox's faults.
func (w *world) applyFaults(ctx context.Context, f sandbox.Faults) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.sandboxURL+"/_sandbox/faults", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.http.Do(req)
	if err != nil {
		return fmt.Errorf("set faults: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("set faults: %d %s", resp.StatusCode, body)
	}
	return nil
}

// adminGet decodes a sandbox admin endpoint's JSON answer.
func (w *world) adminDo(ctx context.Context, method, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, method, w.sandboxURL+path, nil)
	resp, err := w.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: status %d", method, path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// pollSandbox records the keys the sandbox issued, its fault count and the
// emails it sent (drained, so the state file stays small).
func (w *world) pollSandbox(ctx context.Context) error {
	var keys []sandbox.IssuedKey
	if err := w.adminDo(ctx, http.MethodGet, "/_sandbox/iam/access-keys", &keys); err != nil {
		return err
	}
	var counts sandbox.FaultCounts
	if err := w.adminDo(ctx, http.MethodGet, "/_sandbox/faults/injected", &counts); err != nil {
		return err
	}
	var mails []sandbox.Email
	if err := w.adminDo(ctx, http.MethodPost, "/_sandbox/ses/outbox/drain", &mails); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		w.secrets[k.AccessKeyID] = k.SecretAccessKey
		w.keyUser[k.AccessKeyID] = k.UserName
	}
	w.faultsLive = counts
	for _, m := range mails {
		w.emails[m.MessageID] = m
	}
	return nil
}

// secret returns the secret access key of key id, asking the sandbox if
// it is not known yet.
func (w *world) secret(ctx context.Context, id string) (string, bool) {
	w.mu.Lock()
	s, ok := w.secrets[id]
	w.mu.Unlock()
	if ok {
		return s, true
	}
	if err := w.pollSandbox(ctx); err != nil {
		return "", false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok = w.secrets[id]
	return s, ok
}

func (w *world) faultsInjected() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n uint64
	for _, c := range []sandbox.FaultCounts{w.faultsBase, w.faultsLive} {
		for _, v := range c {
			n += v
		}
	}
	return n
}

// apiKeyID asks the API for user's key and returns its id.
func (w *world) apiKeyID(ctx context.Context, user string) (string, error) {
	c := &keyrothttp.Client{BaseURL: w.apiURL, APIKey: w.apiKey, HTTPClient: w.http}
	creds, err := c.Get(ctx, user)
	if err != nil {
		return "", err
	}
	return creds.AccessKeyID, nil
}

// killSandbox kills the sandbox with SIGKILL (after a last poll of what it
// counted) and restarts it on its data after down.
func (w *world) killSandbox(ctx context.Context, down time.Duration) error {
	_ = w.pollSandbox(ctx)
	w.sandbox.kill()
	w.mu.Lock()
	w.sbKills++
	for k, v := range w.faultsLive {
		w.faultsBase[k] += v
	}
	w.faultsLive = sandbox.FaultCounts{}
	w.mu.Unlock()
	sleep(ctx, down)
	return w.startSandbox(ctx)
}

// killEngine kills `keyrot run` with SIGKILL and restarts it after down.
func (w *world) killEngine(ctx context.Context, down time.Duration) error {
	w.engine.kill()
	w.mu.Lock()
	w.engineKills++
	w.mu.Unlock()
	sleep(ctx, down)
	return w.startEngine(ctx)
}

// heal stops the faults and makes sure both processes run.
func (w *world) heal(ctx context.Context) error {
	w.mu.Lock()
	w.phase = sandbox.Faults{PropagationDelay: baselinePropagation}
	w.mu.Unlock()
	if !w.sandbox.running() {
		if err := w.startSandbox(ctx); err != nil {
			return err
		}
	} else {
		// A kill that ended with the chaos may have left the sandbox
		// restarted but not yet listening: wait for it.
		if err := waitHTTP(ctx, w.http, w.sandboxURL+"/_sandbox/healthz", 30*time.Second); err != nil {
			return fmt.Errorf("sandbox did not come up: %w (log: %s)", err, w.sandbox.logFile())
		}
		if err := w.applyFaults(ctx, sandbox.Faults{PropagationDelay: baselinePropagation}); err != nil {
			return err
		}
	}
	if !w.engine.running() {
		if err := w.startEngine(ctx); err != nil {
			return err
		}
	}
	return w.engineReady(ctx, time.Minute)
}

// stopProcesses stops the engine and the sandbox gracefully, after a last
// poll of the sandbox.
func (w *world) stopProcesses() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w.engine.terminate()
	_ = w.pollSandbox(ctx)
	w.sandbox.terminate()
}

func (w *world) stop() {
	w.engine.kill()
	w.sandbox.kill()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// proc is a child process that can be killed and started again; each life
// logs (stdout and stderr) to its own file.
type proc struct {
	name, bin string
	args, env []string
	logDir    string
	onLine    func(string)

	mu    sync.Mutex
	lives int
	cmd   *exec.Cmd
	done  chan struct{}
}

func (p *proc) logFile() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return filepath.Join(p.logDir, fmt.Sprintf("%s-%03d.log", p.name, p.lives))
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.name)
	}
	p.lives++
	f, err := os.OpenFile(filepath.Join(p.logDir, fmt.Sprintf("%s-%03d.log", p.name, p.lives)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout = f
	var pw *io.PipeWriter
	if p.onLine != nil {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		cmd.Stderr = io.MultiWriter(f, pw)
		go func() {
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				p.onLine(sc.Text())
			}
			_, _ = io.Copy(io.Discard, pr)
		}()
	} else {
		cmd.Stderr = f
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if pw != nil {
			pw.Close()
		}
		f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() { p.signal(syscall.SIGKILL, 0) }

// terminate sends SIGTERM, and SIGKILL if it has not stopped in 20 s.
func (p *proc) terminate() { p.signal(syscall.SIGTERM, 20*time.Second) }

func (p *proc) signal(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// logFiles lists every log the run wrote.
func (w *world) logFiles() ([]string, error) {
	var files []string
	err := filepath.WalkDir(w.o.work, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "sandbox-data" || d.Name() == "cache") {
			return filepath.SkipDir // keyrot's and the sandbox's stores, where keys belong
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".log") || strings.HasSuffix(path, ".txt") || strings.HasSuffix(path, ".json")) {
			files = append(files, path)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return files, err
}

// sabotage, after a while, does what keyrot must never do, so that a run
// with -sabotage shows the checks catch it: it deactivates the first
// user's current key behind keyrot's back (consumers fail, the watcher
// sees the current key inactive) and writes a secret access key into a
// log (a leak).
func (w *world) sabotage(ctx context.Context, after time.Duration) {
	sleep(ctx, after)
	if ctx.Err() != nil {
		return
	}
	u := w.users[0]
	ptr, err := readPointer(ctx, w.sm, u)
	if err != nil || ptr.key == "" {
		fmt.Printf("chaos: sabotage: no current key for %s: %v\n", u, err)
		return
	}
	if _, err := w.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(u), AccessKeyId: aws.String(ptr.key), Status: iamtypes.StatusTypeInactive}); err != nil {
		fmt.Printf("chaos: sabotage: deactivate %s: %v\n", ptr.key, err)
		return
	}
	secret, _ := w.secret(ctx, ptr.key)
	_ = os.WriteFile(filepath.Join(w.o.work, "logs", "sabotage.log"), []byte("the secret of "+ptr.key+" is "+secret+"\n"), 0o600)
	fmt.Printf("chaos: %s SABOTAGE: deactivated %s's current key %s behind keyrot's back and wrote its secret into logs/sabotage.log\n",
		time.Now().UTC().Format("15:04:05"), u, ptr.key)
}
