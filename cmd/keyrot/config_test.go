package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
)

// configCommands are the commands that load a config.
var configCommands = []string{"validate", "run", "rotate", "serve", "status"}

// caseArgs writes the case's file (if any) and returns its --config flag.
func caseArgs(t *testing.T, dir string, c testkit.ConfigCase) []string {
	t.Helper()
	if c.File == "" {
		return nil
	}
	path := filepath.Join(dir, strings.NewReplacer(" ", "-", "/", "-").Replace(c.Name)+".yaml")
	if err := os.WriteFile(path, []byte(c.File), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--config", path}
}

// TestBadConfigsEveryCommand: every command that loads a config rejects
// each shared bad input with exit 2, naming the field, before it touches
// AWS (the context is cancelled: nothing could run).
func TestBadConfigsEveryCommand(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range testkit.BadConfigs() {
		args := caseArgs(t, dir, c)
		for _, cmd := range configCommands {
			t.Run(c.Name+"/"+cmd, func(t *testing.T) {
				stdout, stderr := &testkit.Buffer{}, &testkit.Buffer{}
				m := &Main{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, LookupEnv: c.LookupEnv(nil), Open: openFile}
				if code := m.Run(ctx, append([]string{cmd}, args...)); code != exitUsage {
					t.Fatalf("exit %d, want %d: %s", code, exitUsage, stderr)
				}
				if !strings.Contains(stderr.String(), c.Field) {
					t.Errorf("stderr does not name %s: %s", c.Field, stderr)
				}
				if strings.Contains(stdout.String()+stderr.String(), "your-secure-api-key") {
					t.Error("the API key was echoed")
				}
			})
		}
	}
}

// TestGoodConfigsEveryCommand: every command accepts each shared good
// input: validate exits 0, rotate and status run a pass on the sandbox,
// run and serve start serving.
func TestGoodConfigsEveryCommand(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	for _, c := range testkit.GoodConfigs() {
		args := caseArgs(t, tm.dir, c)
		c.Env = maps.Clone(c.Env)
		if c.Env == nil {
			c.Env = map[string]string{}
		}
		c.Env["KEYROT_API_LISTEN"] = "127.0.0.1:0" // not the default :8000, which may be taken
		for _, cmd := range configCommands {
			t.Run(c.Name+"/"+cmd, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				stderr := &testkit.Buffer{}
				ready := false
				m := &Main{Stdin: strings.NewReader(""), Stdout: &testkit.Buffer{}, Stderr: stderr, LookupEnv: c.LookupEnv(os.LookupEnv), Open: openFile,
					Ready: func(map[string]string) { ready = true; cancel() }}
				code := m.Run(ctx, append([]string{cmd}, args...))
				if code != exitOK {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				if (cmd == "run" || cmd == "serve") && !ready {
					t.Errorf("%s exited without serving: %s", cmd, stderr)
				}
			})
		}
	}
}

// TestCommandsNeedOnlyTheirSections: status and a dry run send no email, so they need
// no mail settings; serve needs no user selection; credentials --direct
// needs neither.
func TestCommandsNeedOnlyTheirSections(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	ctx := context.Background()
	noMail := tm.writeConfig("users: {names: [ci-bot]}\n")
	for _, args := range [][]string{{"status", "--config", noMail}, {"rotate", "--dry-run", "--config", noMail}} {
		if code := tm.run(ctx, args...); code != exitOK {
			t.Errorf("%v: exit %d: %s", args, code, tm.stderr)
		}
	}
	if code := tm.run(ctx, "rotate", "--config", noMail); code != exitUsage || !strings.Contains(tm.stderr.String(), "notify.sender") {
		t.Errorf("rotate without mail settings: exit %d: %s", code, tm.stderr)
	}
	t.Setenv("API_KEY", testkit.ConfigStrongKey)
	t.Setenv("KEYROT_API_LISTEN", "127.0.0.1:0")
	_, stop := tm.start("serve") // fails the test unless it serves
	stop()

	// The daemon does not run dry; validate says so as run does, and a
	// one-shot pass may.
	dry := tm.writeConfig("users: {names: [ci-bot]}\nnotify: {via: log}\nrotation: {dry_run: true}\n")
	for _, args := range [][]string{{"validate", "--config", dry}, {"run", "--config", dry}, {"run", "--no-api", "--config", dry}, {"validate", "--no-api", "--config", dry}} {
		tm.stderr.Reset()
		if code := tm.run(ctx, args...); code != exitUsage || !strings.Contains(tm.stderr.String(), "rotation.dry_run") {
			t.Errorf("%v: exit %d: %s", args, code, tm.stderr)
		}
	}
	if code := tm.run(ctx, "rotate", "--config", dry); code != exitOK {
		t.Errorf("rotate with dry_run: exit %d: %s", code, tm.stderr)
	}
}

func TestConfigCommand(t *testing.T) {
	tm := newTestMain(t)
	ctx := context.Background()
	cfg := tm.writeConfig("users: {names: [ci-bot]}\nrotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\nnotify: {recipients: {key_created: [owner]}}\n")
	t.Setenv("KEYROT_NOTIFY_QUIET_PERIOD", "6h")
	t.Setenv("API_KEY", testkit.ConfigStrongKey)
	t.Setenv("KEYROT_SMTP_PASSWORD", "Zq9-smtp-secret")
	if code := tm.run(ctx, "config", "--config", cfg, "--set", "rotation.resync=5m"); code != exitOK {
		t.Fatalf("exit %d: %s", code, tm.stderr)
	}
	out := tm.stdout.String()
	for _, want := range []string{
		"rotation.resync", "5m", "flag --set",
		"rotation.rotate_every", "90d", "file " + cfg,
		"notify.quiet_period", "env KEYROT_NOTIFY_QUIET_PERIOD",
		"api.listen", ":8000", "default",
		"API_KEY", "<set>", "env API_KEY",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	tm.stdout.Reset()
	if code := tm.run(ctx, "config", "--config", cfg, "--env"); code != exitOK {
		t.Fatalf("--env exit %d: %s", code, tm.stderr)
	}
	env := tm.stdout.String()
	for _, want := range []string{
		"KEYROT_ROTATION_ROTATE_EVERY=90d\n", "KEYROT_USERS_NAMES=ci-bot\n", "KEYROT_NOTIFY_QUIET_PERIOD=6h\n",
		`KEYROT_NOTIFY_RECIPIENTS='{"key_created":["owner"]}'` + "\n", "# API_KEY is set",
	} {
		if !strings.Contains(env, want) {
			t.Errorf("--env output lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "KEYROT_API_LISTEN") {
		t.Errorf("--env printed a default:\n%s", env)
	}
	for _, bad := range [][]string{{"--set", "rotation.rotate_evry=1d"}, {"--set", "rotation.rotate_every=soon"}, {"--set", "nothing"}} {
		if code := tm.run(ctx, append([]string{"config", "--config", cfg}, bad...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitUsage)
		}
	}
	if !strings.Contains(tm.stderr.String(), "did you mean rotation.rotate_every?") {
		t.Errorf("no suggestion for a misspelt setting: %s", tm.stderr)
	}
	for _, secret := range []string{testkit.ConfigStrongKey, "Zq9-smtp-secret"} {
		if strings.Contains(out+env+tm.stderr.String(), secret) {
			t.Errorf("a secret was printed")
		}
	}
	// The --env output, read back as the environment, is the same config.
	lookup := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(env), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			lookup[k] = strings.TrimSuffix(strings.TrimPrefix(v, "'"), "'")
		}
	}
	fromEnv, _, err := config.FromEnv(func(k string) (string, bool) { v, ok := lookup[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	fromFile, _, err := config.Read(cfg, openFile, func(k string) (string, bool) {
		if k == "KEYROT_NOTIFY_QUIET_PERIOD" {
			return "6h", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range config.Settings() {
		if a, b := s.Format(fromEnv), s.Format(fromFile); a != b {
			t.Errorf("%s: %q from --env, %q from the file", s.Path, a, b)
		}
	}
}

// TestCredentialsDirectReadsTheConfigsPrefix: credentials --direct --config
// reads the secret under the file's secrets.prefix, and needs nothing else
// from the file (no users, no mail settings).
func TestCredentialsDirectReadsTheConfigsPrefix(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	ctx := context.Background()
	engine := tm.writeConfig("users: {names: [ci-bot]}\nsecrets: {prefix: team-a/}\nnotify: {via: log}\n")
	if code := tm.run(ctx, "rotate", "--config", engine); code != exitOK {
		t.Fatalf("rotate exit %d: %s", code, tm.stderr)
	}
	reader := tm.writeConfig("secrets: {prefix: team-a/}\nregion: us-east-1\n")
	tm.stdout.Reset()
	if code := tm.run(ctx, "credentials", "ci-bot", "--direct", "--config", reader, "--format", "env"); code != exitOK {
		t.Fatalf("credentials exit %d: %s", code, tm.stderr)
	}
	if !strings.Contains(tm.stdout.String(), "AWS_ACCESS_KEY_ID=") {
		t.Fatalf("output: %s", tm.stdout)
	}
	if code := tm.run(ctx, "credentials", "ci-bot", "--direct", "--format", "env"); code == exitOK {
		t.Error("read the secret under the default prefix, where there is none")
	}
}
