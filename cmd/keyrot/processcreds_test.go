package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

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
	provider := processcreds.NewProviderCommand(processcreds.NewCommandBuilderFunc(func(ctx context.Context) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0], "credentials", "app", "--api", api, "--format", "credential_process")
		cmd.Env = append(os.Environ(), runMainEnv+"=1", "KEYROT_API_KEY="+apiKey)
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
