package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/secretsmanager"
)

// boto3Consumer calls STS in a loop with a boto3 client on a profile whose
// credentials come from credential_process, and prints what happened.
const boto3Consumer = `
import json, os, sys, time
import boto3
client = boto3.session.Session(profile_name="app").client(
    "sts", endpoint_url=os.environ["SANDBOX_URL"], region_name="us-east-1",
    config=boto3.session.Config(retries={"max_attempts": 1}))
ok, failures = 0, []
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        client.get_caller_identity()
        ok += 1
    except Exception as e:
        failures.append("%.1fs: %s" % (time.time() - end + float(sys.argv[1]), str(e)[:300]))
    time.sleep(0.05)
print(json.dumps({"ok": ok, "failures": failures}))
`

// TestBoto3CredentialProcessThroughRotationsStallAndRestart: a boto3 client
// (a real SDK of another language, with botocore's own refresh rules) on a
// credential_process profile signs STS calls continuously while the engine
// rotates at least three times, then stalls for longer than rotate_every +
// deactivate_after while the API restarts, then resumes. No call may fail.
func TestBoto3CredentialProcessThroughRotationsStallAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("about 40 s of wall time")
	}
	python, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(python, "-c", "import boto3").Run()
	}
	if err != nil {
		t.Skip("python3 with boto3 not installed (pip install boto3)")
	}
	tm := newTestMain(t)
	tm.createUser("app")
	ctx := context.Background()
	apiKey, _, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("API_KEY", apiKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cfg := tm.writeConfig(fmt.Sprintf(`
users: {names: [app]}
rotation: {rotate_every: 6s, deactivate_after: 3s, delete_after: 2s, orphan_grace: 2s, verify_timeout: 5s}
notify: {via: log}
api: {listen: %q, refresh: 1s}
log: {format: json}
`, listen))
	if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
		t.Fatalf("rotate: %d %s", code, tm.stderr)
	}

	// The engine: a pass every half second while it is on (the Lambda's
	// shape: a one-shot pass on a schedule).
	var (
		mu       sync.Mutex
		engineOn = true
		keys     = map[string]bool{}
	)
	store := secretsmanager.New(awssm.NewFromConfig(tm.aws), secretsmanager.Config{Prefix: "iam-key-rotation/"})
	engineCtx, stopEngine := context.WithCancel(ctx)
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		for engineCtx.Err() == nil {
			mu.Lock()
			on := engineOn
			mu.Unlock()
			if on {
				m := &Main{Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile}
				m.Run(engineCtx, []string{"rotate", "--config", cfg})
			}
			if c, err := store.Current(engineCtx, "app"); err == nil {
				mu.Lock()
				keys[c.AccessKeyID] = true
				mu.Unlock()
			}
			select {
			case <-engineCtx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	defer func() { stopEngine(); <-engineDone }()

	// The API: `keyrot serve`, restartable on the same address.
	startServe := func() (stop func()) {
		sctx, cancel := context.WithCancel(ctx)
		ready := make(chan map[string]string, 1)
		done := make(chan int, 1)
		go func() {
			m := &Main{Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile, Ready: func(a map[string]string) { ready <- a }}
			done <- m.Run(sctx, []string{"serve", "--config", cfg})
		}()
		select {
		case <-ready:
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, tm.stderr)
		}
		return func() { cancel(); <-done }
	}
	stopServe := startServe()

	// The consumer: boto3 with credential_process = keyrot credentials.
	dir := t.TempDir()
	profile := fmt.Sprintf("[profile app]\ncredential_process = %s credentials app --api http://%s --format credential_process\n", os.Args[0], listen)
	awsConfig := filepath.Join(dir, "config")
	if err := os.WriteFile(awsConfig, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "consumer.py")
	if err := os.WriteFile(script, []byte(boto3Consumer), 0o600); err != nil {
		t.Fatal(err)
	}
	const run = 44 * time.Second
	consumer := exec.CommandContext(ctx, python, script, fmt.Sprint(run.Seconds()))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	consumer.Env = append(env, "AWS_CONFIG_FILE="+awsConfig, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "SANDBOX_URL="+tm.sb.URL(),
		runMainEnv+"=1", "KEYROT_API_KEY="+apiKey, "KEYROT_CACHE_DIR="+filepath.Join(dir, "cache"))
	var out, errOut strings.Builder
	consumer.Stdout, consumer.Stderr = &out, &errOut
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }

	at(22 * time.Second) // rotations about every 7 s (rotate_every, then the next pass)
	mu.Lock()
	engineOn = false // the engine stalls past rotate_every + deactivate_after
	rotated := len(keys)
	mu.Unlock()
	at(28 * time.Second)
	stopServe() // the API restarts meanwhile
	time.Sleep(300 * time.Millisecond)
	stopServe = startServe()
	defer func() { stopServe() }()
	at(36 * time.Second) // stalled 14 s: more than rotate_every + deactivate_after
	mu.Lock()
	engineOn = true
	mu.Unlock()

	if err := consumer.Wait(); err != nil {
		t.Fatalf("consumer: %v\n%s", err, errOut.String())
	}
	var res struct {
		OK       int
		Failures []string
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("consumer output %q: %v\n%s", out.String(), err, errOut.String())
	}
	if len(res.Failures) > 0 {
		t.Errorf("%d of %d STS calls failed: %q", len(res.Failures), res.OK+len(res.Failures), res.Failures)
	}
	mu.Lock()
	total := len(keys)
	mu.Unlock()
	if rotated < 3 || total < 4 {
		t.Errorf("%d keys before the stall, %d in all: want three rotations or more while the consumer ran", rotated, total)
	}
	// botocore runs credential_process, here this test binary, before
	// every call: about 1 s each under -race (41 calls in 44 s), 0.1 s
	// without. Enough calls to span every phase either way.
	if res.OK < 30 {
		t.Errorf("only %d STS calls succeeded in %s", res.OK, run)
	}
	t.Logf("boto3: %d STS calls, %d failures; %d keys in all (%d before the stall)", res.OK, len(res.Failures), total, rotated)
}
