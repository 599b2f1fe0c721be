package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestStalledEngineNeverBreaksConsumers: the engine stops in the middle of
// a key's life and the driven clock moves past rotate_every +
// deactivate_after. `keyrot serve` and `keyrot credentials --direct`
// (without any config) still give an Expiration in the future for the key,
// which still works; when the engine resumes, a consumer that refetches at
// the Expiration it was given gets the new key before the old one is
// deactivated.
func TestStalledEngineNeverBreaksConsumers(t *testing.T) {
	clk := mock.NewClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clk})
	tm := newTestMainOn(t, sb)
	tm.clock = clk
	tm.createUser("ci-bot")
	ctx := context.Background()
	// The seed's timings and a ring of 4: the secret's own timings are all
	// a reader needs (--direct is given no config below).
	cfg := tm.writeConfig(`
users: {names: [ci-bot]}
rotation: {rotate_every: 5m, deactivate_after: 2m, delete_after: 1m}
notify: {via: log}
api: {listen: "127.0.0.1:0", refresh: 30s}
log: {format: json}
`)
	rotate := func() {
		t.Helper()
		if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
			t.Fatalf("rotate: %d %s", code, tm.stderr)
		}
	}
	rotate()
	t0 := clk.Now()

	apiKey, _, _ := keyrothttp.GenerateAPIKey()
	t.Setenv("API_KEY", apiKey)
	api, _ := tm.serve(ctx, cfg)
	serveGet := func() keyrothttp.CredentialProcessResponse {
		t.Helper()
		req, _ := http.NewRequest("GET", api+"/credentials/ci-bot?format=credential_process", nil)
		req.Header.Set("X-API-Key", apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var c keyrothttp.CredentialProcessResponse
		if resp.StatusCode != 200 || json.Unmarshal(body, &c) != nil {
			t.Fatalf("GET = %d %s", resp.StatusCode, body)
		}
		return c
	}
	direct := func() keyrothttp.CredentialProcessResponse {
		t.Helper()
		tm.stdout.Reset()
		if code := tm.run(ctx, "credentials", "ci-bot", "--direct", "--format", "credential_process"); code != exitOK {
			t.Fatalf("credentials --direct: %d %s", code, tm.stderr)
		}
		var c keyrothttp.CredentialProcessResponse
		if err := json.Unmarshal([]byte(tm.stdout.String()), &c); err != nil {
			t.Fatalf("credentials --direct output %q: %v", tm.stdout, err)
		}
		return c
	}
	first := serveGet()

	// The engine stops. Well past rotate_every + deactivate_after later the
	// key still works, and every reader says so.
	clk.Set(t0.Add(5*time.Minute + 2*time.Minute + 30*time.Second))
	stalled := clk.Now()
	var given time.Time
	for name, read := range map[string]func() keyrothttp.CredentialProcessResponse{"serve": serveGet, "credentials --direct": direct} {
		c := read()
		if c.AccessKeyId != first.AccessKeyId {
			t.Fatalf("%s: key %s, want the stalled key %s", name, c.AccessKeyId, first.AccessKeyId)
		}
		if !c.Expiration.After(stalled) {
			t.Errorf("%s: Expiration %v is not after now %v for a key that still works", name, c.Expiration, stalled)
		}
		if want := stalled.Add(time.Minute); !c.Expiration.Equal(want) {
			t.Errorf("%s: Expiration %v, want now + deactivate_after/2 = %v", name, c.Expiration, want)
		}
		given = c.Expiration
	}
	if err := callSTS(ctx, sb, first.AccessKeyId, first.SecretAccessKey); err != nil {
		t.Fatalf("STS with the stalled key: %v", err)
	}

	// The engine resumes: a new key, promoted now.
	rotate()
	promoted := clk.Now()
	// A consumer refetches at the Expiration it was given: serve polls every
	// 30s (a quarter of deactivate_after at most), so by then it has the new key.
	clk.Set(given)
	deadline := time.Now().Add(10 * time.Second)
	next := serveGet()
	for next.AccessKeyId == first.AccessKeyId && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // serve's poll runs on its own goroutine
		next = serveGet()
	}
	if next.AccessKeyId == first.AccessKeyId {
		t.Fatalf("at %v serve still hands out %s, promoted away from at %v", given, first.AccessKeyId, promoted)
	}
	if !given.Before(promoted.Add(2 * time.Minute)) {
		t.Errorf("consumers were told to refetch at %v, not before the old key's deactivation at %v", given, promoted.Add(2*time.Minute))
	}
	if c := direct(); c.AccessKeyId != next.AccessKeyId {
		t.Errorf("credentials --direct gives %s, serve %s", c.AccessKeyId, next.AccessKeyId)
	}
	// The old key is deactivated on time; the consumer's key works.
	clk.Set(promoted.Add(2 * time.Minute))
	rotate()
	if err := callSTS(ctx, sb, first.AccessKeyId, first.SecretAccessKey); err == nil {
		t.Errorf("the old key %s still works after deactivate_after", first.AccessKeyId)
	}
	if err := callSTS(ctx, sb, next.AccessKeyId, next.SecretAccessKey); err != nil {
		t.Errorf("STS with the key the consumer switched to: %v", err)
	}
}

func callSTS(ctx context.Context, sb *sandbox.Server, id, secret string) error {
	_, err := sts.NewFromConfig(sandboxtest.EndpointConfig(sb.URL(), id, secret)).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	return err
}

// newTestMainOn is newTestMain on a sandbox the test started.
func newTestMainOn(t *testing.T, sb *sandbox.Server) *testMain {
	id, secret := sb.AdminCredentials()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": sb.URL(), "AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": dir + "/none", "AWS_SHARED_CREDENTIALS_FILE": dir + "/none", "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	return &testMain{t: t, sb: sb, aws: sandboxtest.Config(t, sb), dir: dir, stdout: &testkit.Buffer{}, stderr: &testkit.Buffer{}}
}

// serve runs `keyrot serve --config cfg` until stop is called or the test
// ends, and returns the API's base URL.
func (tm *testMain) serve(ctx context.Context, cfg string) (api string, stop func()) {
	tm.t.Helper()
	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan map[string]string, 1)
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: io.Discard, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile, Clock: tm.clock,
			Ready: func(a map[string]string) { ready <- a }}
		done <- m.Run(sctx, []string{"serve", "--config", cfg})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != exitOK {
				tm.t.Errorf("serve exit %d", code)
			}
		})
	}
	tm.t.Cleanup(stop)
	select {
	case a := <-ready:
		return a["api"], stop
	case code := <-done:
		tm.t.Fatalf("serve exited %d: %s", code, tm.stderr)
		return "", stop
	}
}
