package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// testMain runs keyrot against a sandbox through the AWS SDK's standard
// environment chain (AWS_ENDPOINT_URL), as a user would.
type testMain struct {
	t      *testing.T
	sb     *sandbox.Server
	aws    aws.Config
	dir    string
	stdout *testkit.Buffer
	stderr *testkit.Buffer
	clock  keyrot.Clock // nil: the wall clock
}

func newTestMain(t *testing.T) *testMain {
	sb := sandboxtest.Start(t, sandbox.Options{})
	id, secret := sb.AdminCredentials()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": sb.URL(), "AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"), "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	return &testMain{t: t, sb: sb, aws: sandboxtest.Config(t, sb), dir: dir, stdout: &testkit.Buffer{}, stderr: &testkit.Buffer{}}
}

func (tm *testMain) writeConfig(body string) string {
	tm.t.Helper()
	f, err := os.CreateTemp(tm.dir, "keyrot-*.yaml")
	if err != nil {
		tm.t.Fatal(err)
	}
	f.Close()
	path := f.Name()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		tm.t.Fatal(err)
	}
	return path
}

func (tm *testMain) run(ctx context.Context, args ...string) int {
	tm.t.Helper()
	m := &Main{Stdin: strings.NewReader(""), Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv,
		Open: func(p string) (io.ReadCloser, error) { return os.Open(p) }, Clock: tm.clock}
	return m.Run(ctx, args)
}

// start runs a long-running command (serve, run) and returns the addresses
// it serves once it is ready, and stop, which ends it (as SIGTERM would) and
// waits; the test's end stops it too.
func (tm *testMain) start(args ...string) (addrs map[string]string, stop func()) {
	tm.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]string, 1)
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile,
			Ready: func(a map[string]string) { ready <- a }, Clock: tm.clock}
		done <- m.Run(ctx, args)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != exitOK {
				tm.t.Errorf("keyrot %s exited %d: %s", args[0], code, tm.stderr)
			}
		})
	}
	tm.t.Cleanup(stop)
	select {
	case addrs = <-ready:
		return addrs, stop
	case code := <-done:
		done <- code
		tm.t.Fatalf("keyrot %s exited %d before it was ready: %s", args[0], code, tm.stderr)
		return nil, stop
	}
}

func (tm *testMain) createUser(name string) {
	tm.t.Helper()
	if _, err := awsiam.NewFromConfig(tm.aws).CreateUser(context.Background(), &awsiam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		tm.t.Fatal(err)
	}
}

func (tm *testMain) secretValue(name string) string {
	tm.t.Helper()
	out, err := awssm.NewFromConfig(tm.aws).GetSecretValue(context.Background(), &awssm.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		tm.t.Fatalf("read secret %s: %v", name, err)
	}
	return aws.ToString(out.SecretString)
}

const testConfig = `
users: {names: [ci-bot]}
rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}
notify: {via: log}
log: {format: json}
`

func TestRotateStatusValidate(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	cfg := tm.writeConfig(testConfig)
	ctx := context.Background()

	if code := tm.run(ctx, "rotate", "--config", cfg, "--dry-run"); code != exitOK {
		t.Fatalf("rotate --dry-run exit %d: %s", code, tm.stderr)
	}
	if !strings.Contains(tm.stdout.String(), "would do create") {
		t.Fatalf("dry run output: %s", tm.stdout)
	}
	if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
		t.Fatalf("rotate exit %d: %s", code, tm.stderr)
	}
	if !strings.Contains(tm.stdout.String(), "1 users: 1 created") {
		t.Fatalf("rotate output: %s", tm.stdout)
	}
	var secret struct{ AccessKeyId, SecretAccessKey string }
	if err := json.Unmarshal([]byte(tm.secretValue("iam-key-rotation/ci-bot")), &secret); err != nil || secret.SecretAccessKey == "" {
		t.Fatalf("secret: %v", err)
	}

	tm.stdout.Reset()
	if code := tm.run(ctx, "status", "--config", cfg, "-o", "json"); code != exitOK {
		t.Fatalf("status exit %d: %s", code, tm.stderr)
	}
	var rows []statusRow
	if err := json.Unmarshal([]byte(tm.stdout.String()), &rows); err != nil {
		t.Fatalf("status json: %v: %s", err, tm.stdout)
	}
	if len(rows) != 1 || rows[0].CurrentKey != secret.AccessKeyId || rows[0].Next != "rotate: create a new key" {
		t.Fatalf("status rows = %+v", rows)
	}
	if code := tm.run(ctx, "status", "--config", cfg); code != exitOK || !strings.Contains(tm.stdout.String(), "CURRENT KEY") {
		t.Fatalf("status table exit %d: %s", code, tm.stdout)
	}
	if code := tm.run(ctx, "validate", "--config", cfg, "--no-api"); code != exitOK || !strings.Contains(tm.stdout.String(), "rotate_every: 90d") {
		t.Fatalf("validate exit %d: %s", code, tm.stdout)
	}
	for _, out := range []string{tm.stdout.String(), tm.stderr.String()} {
		if strings.Contains(out, secret.SecretAccessKey) {
			t.Fatal("a secret access key reached the output")
		}
	}
}

func TestExitCodes(t *testing.T) {
	tm := newTestMain(t)
	ctx := context.Background()
	bad := tm.writeConfig("users: {names: [ci-bot]}\nnotify: {via: log}\nrotation: {rotate_every: 2m}\n")
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no command", nil, exitUsage, "Usage"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "unknown command"},
		{"bad flag", []string{"rotate", "--nope"}, exitUsage, "keyrot rotate: flag provided but not defined: -nope\nRun \"keyrot help rotate\" for usage.\n"},
		{"bad config", []string{"validate", "--config", bad}, exitUsage, "rotation.deactivate_after"},
		{"webhook secret unset", []string{"validate", "--config", tm.writeConfig("users: {names: [ci-bot]}\nnotify: {via: log, webhooks: [{url: \"https://hooks.example.com/k\", secret_env: KEYROT_TEST_UNSET_SECRET}]}\n")},
			exitUsage, "notify.webhooks[0].secret_env"},
		{"sync token unset", []string{"validate", "--no-api", "--config", tm.writeConfig("users: {names: [ci-bot]}\nnotify: {via: log}\nsync: {github: [{repo: acme/app, users: [ci-bot]}]}\n")},
			exitUsage, "KEYROT_GITHUB_TOKEN"},
		{"missing file", []string{"rotate", "--config", filepath.Join(tm.dir, "absent.yaml")}, exitUsage, "absent.yaml"},
		{"user not managed", []string{"rotate", "--config", tm.writeConfig(testConfig), "--user", "nobody"}, exitUsage,
			"keyrot rotate: user \"nobody\": not managed by this configuration\n"},
		{"user missing in IAM", []string{"rotate", "--config", tm.writeConfig(testConfig)}, exitOK, "user_deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm.stdout.Reset()
			tm.stderr.Reset()
			if got := tm.run(ctx, tt.args...); got != tt.code {
				t.Fatalf("exit %d, want %d: %s %s", got, tt.code, tm.stdout, tm.stderr)
			}
			if !strings.Contains(tm.stdout.String()+tm.stderr.String(), tt.says) {
				t.Fatalf("output does not say %q: %s %s", tt.says, tm.stdout, tm.stderr)
			}
			if doubled := doubledPrefix(tm.stderr.String()); doubled != "" {
				t.Errorf("stderr repeats a prefix: %q", doubled)
			}
		})
	}
}

func TestDaemonRotatesAndStopsCleanly(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	cfg := tm.writeConfig(testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- tm.run(ctx, "run", "--config", cfg, "--no-api") }()

	iamc := awsiam.NewFromConfig(tm.aws)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := iamc.ListAccessKeys(context.Background(), &awsiam.ListAccessKeysInput{UserName: aws.String("ci-bot")})
		if err == nil && len(out.AccessKeyMetadata) == 1 && strings.Contains(tm.stderr.String(), "key_created") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon created no key: %s", tm.stderr)
		}
		select {
		case code := <-done:
			t.Fatalf("daemon exited early with %d: %s", code, tm.stderr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("daemon exit %d: %s", code, tm.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if !strings.Contains(tm.stderr.String(), "scheduler stopped") {
		t.Fatalf("no clean stop in the log: %s", tm.stderr)
	}
}

// TestValidateWarns: a valid config that emails some event kind to nobody,
// or polls slower than its timings allow, passes validate (exit 0) with a
// warning on stderr; kinds missing from notify.recipients keep the default
// and raise none.
func TestValidateWarns(t *testing.T) {
	tm := newTestMain(t)
	ctx := context.Background()
	cfg := tm.writeConfig(`
users: {names: [ci-bot]}
rotation: {rotate_every: 30s, deactivate_after: 8s, delete_after: 4s}
notify:
  sender: keyrot@example.com
  admin: security@example.com
  recipients:
    key_created: [admin, owner]
    key_deleted: []
api: {refresh: 30s}
`)
	if code := tm.run(ctx, "validate", "--config", cfg, "--no-api"); code != exitOK {
		t.Fatalf("validate exit %d: %s", code, tm.stderr)
	}
	stderr := tm.stderr.String()
	for _, want := range []string{
		"keyrot validate: warning: notify.recipients.key_deleted is an empty list: key_deleted events are emailed to nobody",
		"keyrot validate: warning: api.refresh (30s) is longer than a quarter of rotation.deactivate_after (8s): the API checks for promoted keys every 2s instead",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	for _, kind := range []string{"key_deactivated", "rotation_failed", "warning", "key_created"} {
		if strings.Contains(stderr, "notify.recipients."+kind) {
			t.Errorf("warned about %s, which reaches admin and owner:\n%s", kind, stderr)
		}
	}
}
