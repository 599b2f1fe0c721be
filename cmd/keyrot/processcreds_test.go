package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/credcache"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// runMainEnv makes the test binary behave as the keyrot command, so that
// the AWS SDK's credential_process provider can run `keyrot credentials`.
const runMainEnv = "KEYROT_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	code := m.Run()
	moto.Close()
	os.Exit(code)
}

// TestCredentialProcessAcrossRotations is a consumer's whole life: the SDK
// loads credentials with `keyrot credentials USER --format credential_process`
// from the API of a running `keyrot run`, and keeps calling STS while the
// daemon rotates the key twice. No call may fail.
func TestCredentialProcessAcrossRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("about 12 s of wall time: the daemon and the SDK's credential cache run on the real clock")
	}
	tm := newTestMain(t)
	tm.createUser("app")
	apiKey := "krt_test-only-key-for-the-daemon-0123456789"
	t.Setenv("API_KEY", apiKey)
	cfg := tm.writeConfig(`
users: {names: [app]}
rotation: {rotate_every: 4s, deactivate_after: 2s, delete_after: 1s, resync: 1s}
notify: {via: log}
api: {listen: "127.0.0.1:0"}
log: {format: json}
`)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]string, 1)
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile,
			Ready: func(a map[string]string) { ready <- a }}
		done <- m.Run(ctx, []string{"run", "--config", cfg})
	}()
	var api string
	select {
	case addrs := <-ready:
		api = addrs["api"]
	case code := <-done:
		t.Fatalf("daemon exited %d: %s", code, tm.stderr)
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not start")
	}
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("daemon exit %d", code)
		}
	}()

	var mu sync.Mutex
	var loaded []string
	cacheDir := t.TempDir()
	provider := processcreds.NewProviderCommand(processcreds.NewCommandBuilderFunc(func(ctx context.Context) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], "credentials", "app", "--api", api, "--format", "credential_process")
		cmd.Env = append(os.Environ(), runMainEnv+"=1", "KEYROT_API_KEY="+apiKey, "KEYROT_CACHE_DIR="+cacheDir)
		return cmd, nil
	}))
	recording := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		c, err := provider.Retrieve(ctx)
		if err == nil {
			mu.Lock()
			loaded = append(loaded, c.AccessKeyID)
			mu.Unlock()
		}
		return c, err
	})
	// Wait for the first key, then call STS the way an application does.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(tm.stderr.String(), "key_created") {
		if time.Now().After(deadline) {
			t.Fatalf("no key created: %s", tm.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	awsCfg := sandboxtest.UserConfig(t, tm.sb, "unused", "unused")
	awsCfg.Credentials = aws.NewCredentialsCache(recording)
	awsCfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} } // a failed call must show
	client := sts.NewFromConfig(awsCfg)

	start := time.Now()
	calls := 0
	for time.Since(start) < 11*time.Second {
		if _, err := client.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatalf("call %d at +%s failed: %v\n%s", calls, time.Since(start).Round(time.Millisecond), err, tm.stderr)
		}
		calls++
		time.Sleep(25 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	distinct := map[string]bool{}
	for _, k := range loaded {
		distinct[k] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("the SDK loaded %d distinct keys in 11s (%v), want >= 3 (two rotations)", len(distinct), loaded)
	}
	if n := strings.Count(tm.stderr.String(), `"event":"key_deleted"`); n < 1 {
		t.Fatalf("no key was deleted while the consumer ran")
	}
	t.Logf("%d STS calls, no failure; the SDK loaded %d keys: %v", calls, len(distinct), loaded)
}

// credentialProcess runs `keyrot credentials USER --format
// credential_process` as a separate process (the test binary acting as
// keyrot), as an SDK does.
func credentialProcess(ctx context.Context, api, apiKey, cacheDir string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"credentials"}, args...)...)
	cmd.Args = append(cmd.Args, "--api", api, "--format", "credential_process")
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "KEYROT_API_KEY="+apiKey, "KEYROT_CACHE_DIR="+cacheDir)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// TestCredentialProcessCache: concurrent processes share the cache file and
// the API is asked once; --no-cache asks it every time; with the API down a
// cached key past its refresh time but before Expiration is served (and
// said so on stderr); an expired one is not.
func TestCredentialProcessCache(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	policy := keyrot.DefaultPolicy()
	cache := keyrothttp.NewCache(nil, policy)
	app := keyrot.Credentials{UserName: "app", AccessKeyID: "AKIAAPPCACHE00000001", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYc1", CreateDate: now, CurrentSince: now}
	cache.Publish(app)
	apiKey, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "app", Hash: hash, Users: []string{"*"}}}, RateLimit: -1}, cache)
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		srv.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()
	cacheDir := filepath.Join(t.TempDir(), "cache")
	want := app.Annotate(now) // the cache's fallback timings: the key was stored without any
	check := func(out string, until ...time.Time) {
		t.Helper()
		if len(until) == 0 {
			// Through the cache, the SDK is told to come back at the
			// cache's refresh time (here NextRotation).
			until = append(until, want.NextRotation)
		}
		var got keyrothttp.CredentialProcessResponse
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if got.Version != 1 || got.AccessKeyId != app.AccessKeyID || got.SecretAccessKey != app.SecretAccessKey || !got.Expiration.Equal(until[0]) {
			t.Fatalf("output %+v, want %s until %s", got, app.AccessKeyID, until[0])
		}
	}

	var wg sync.WaitGroup
	outs := make([]string, 4)
	errs := make([]error, 4)
	for i := range outs {
		wg.Go(func() { outs[i], _, errs[i] = credentialProcess(ctx, ts.URL, apiKey, cacheDir, "app") })
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		check(outs[i])
	}
	first := requests.Load()
	for range 2 {
		out, _, err := credentialProcess(ctx, ts.URL, apiKey, cacheDir, "app")
		if err != nil {
			t.Fatal(err)
		}
		check(out)
	}
	if got := requests.Load(); got != first || first < 1 || first > 4 {
		t.Fatalf("API requests: %d for 4 concurrent processes, %d after 2 more; want 1..4, then none", first, got)
	}
	if out, _, err := credentialProcess(ctx, ts.URL, apiKey, cacheDir, "app", "--no-cache"); err != nil || requests.Load() != first+1 {
		t.Fatalf("--no-cache: %v, %d requests", err, requests.Load())
	} else {
		check(out, want.Expiration) // the API's answer as is
	}
	files, _ := filepath.Glob(filepath.Join(cacheDir, "*"))
	if len(files) != 1 {
		t.Fatalf("cache files %v, want one", files)
	}
	t.Logf("4 concurrent processes asked the API %d time(s); 2 later runs, none", first)

	// Cache entries fetched earlier, as if by an SDK a while ago: one past
	// its NextRotation with 50s left, one expired a second ago.
	seed := func(user string, created time.Time, fetched time.Time) {
		t.Helper()
		c := &credcache.Cache{Dir: cacheDir, Now: func() time.Time { return fetched }}
		creds := keyrot.Credentials{UserName: user, AccessKeyID: "AKIA" + strings.ToUpper(user) + "0000000000", SecretAccessKey: "s3cr3t-" + user, CreateDate: created,
			Timings: keyrot.Timings{RotateEvery: policy.RotateEvery, DeactivateAfter: policy.DeactivateAfter}}.Annotate(fetched)
		if _, err := c.Get(ctx, credcache.Key{APIURL: ts.URL, User: user, APIKey: apiKey}, func(context.Context) (keyrot.Credentials, error) { return creds, nil }); err != nil {
			t.Fatal(err)
		}
	}
	seed("late", now.Add(-5*time.Minute-10*time.Second), now.Add(-2*time.Minute)) // Expiration now+50s
	seed("gone", now.Add(-6*time.Minute-1*time.Second), now.Add(-3*time.Minute))  // Expiration now-1s
	ts.Close()                                                                    // the API is down

	out, stderr, err := credentialProcess(ctx, ts.URL, apiKey, cacheDir, "late")
	if err != nil || !strings.Contains(out, "AKIALATE0000000000") || !strings.Contains(stderr, "the API is unreachable") {
		t.Fatalf("API down, cached key still valid: %v\nstdout %s\nstderr %s", err, out, stderr)
	}
	if strings.Contains(stderr, "s3cr3t") {
		t.Fatalf("stderr holds the secret: %s", stderr)
	}
	out, stderr, err = credentialProcess(ctx, ts.URL, apiKey, cacheDir, "gone")
	if err == nil || strings.Contains(out, "AKIAGONE") || !strings.Contains(stderr, "connect") {
		t.Fatalf("API down, cached key expired: served %q (%v, %s)", out, err, stderr)
	}
}

// TestCredentialProcessAsksAgainAtTheRefreshTime: the AWS SDK for Go runs
// credential_process only once the Expiration it was given has passed. Told
// the key's own Expiration, it came back exactly when the cached key could
// no longer bridge an API outage, so every Go consumer failed through an
// API restart that spanned that moment (found by bench/chaos.sh). It is
// told the cache's refresh time instead: when it comes back then with the
// API down, the cached key is served (and asked for again half way to its
// own Expiration, in case the API is back), never past that Expiration.
func TestCredentialProcessAsksAgainAtTheRefreshTime(t *testing.T) {
	ctx := context.Background()
	clk := mock.NewClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	policy := keyrot.DefaultPolicy()
	cache := keyrothttp.NewCache(nil, policy, keyrothttp.WithCacheClock(clk))
	app := keyrot.Credentials{UserName: "app", AccessKeyID: "AKIAAPPREFRESH000001", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYr1",
		CreateDate: clk.Now(), CurrentSince: clk.Now()}
	cache.Publish(app)
	want := app.Annotate(clk.Now()) // NextRotation 5m1s on, Expiration a minute later
	apiKey, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "app", Hash: hash, Users: []string{"*"}}}, RateLimit: -1}, cache)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	env := map[string]string{"KEYROT_API_KEY": apiKey, "KEYROT_CACHE_DIR": t.TempDir()}
	run := func() (keyrothttp.CredentialProcessResponse, string, int) {
		t.Helper()
		var out, errOut strings.Builder
		m := &Main{Stdout: &out, Stderr: &errOut, Clock: clk, Open: openFile,
			LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
		code := m.Run(ctx, []string{"credentials", "app", "--api", ts.URL, "--format", "credential_process"})
		var got keyrothttp.CredentialProcessResponse
		if code == exitOK {
			if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
				t.Fatalf("output %q: %v", out.String(), err)
			}
		}
		return got, errOut.String(), code
	}

	got, stderr, code := run()
	if code != exitOK || got.AccessKeyId != app.AccessKeyID || !got.Expiration.Equal(want.NextRotation) {
		t.Fatalf("from the API: %+v (exit %d, %s); want %s until its refresh time %s, not its Expiration %s",
			got, code, stderr, app.AccessKeyID, want.NextRotation, want.Expiration)
	}
	clk.Set(got.Expiration) // the SDK comes back, and the API is down
	ts.Close()
	got, stderr, code = run()
	halfway := want.NextRotation.Add(want.Expiration.Sub(want.NextRotation) / 2)
	if code != exitOK || got.AccessKeyId != app.AccessKeyID || !got.Expiration.Equal(halfway) || !strings.Contains(stderr, "the API is unreachable") {
		t.Fatalf("API down at the refresh time: %+v (exit %d, %s); want the cached key, asked for again at %s", got, code, stderr, halfway)
	}
	clk.Set(want.Expiration)
	if got, _, code := run(); code == exitOK {
		t.Fatalf("API down at the key's Expiration: served %+v", got)
	}
}
