package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
)

// devRun is a `keyrot dev` running in the test.
type devRun struct {
	out, errs *testkit.Buffer
	addrs     map[string]string
	cancel    context.CancelFunc
	done      chan int
}

// startDev runs `keyrot dev args...` until the test ends, and waits until
// it serves.
func startDev(t *testing.T, args ...string) *devRun {
	t.Helper()
	d := &devRun{out: &testkit.Buffer{}, errs: &testkit.Buffer{}, done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	ready := make(chan map[string]string, 1)
	go func() {
		m := &Main{Stdout: d.out, Stderr: d.errs, LookupEnv: func(string) (string, bool) { return "", false }, Open: openFile,
			Ready: func(a map[string]string) { ready <- a }}
		d.done <- m.Run(ctx, append([]string{"dev", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"}, args...))
	}()
	select {
	case d.addrs = <-ready:
	case code := <-d.done:
		t.Fatalf("dev exited %d: %s %s", code, d.out, d.errs)
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not start")
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop ends dev (once) and checks that it stopped cleanly.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	if d.cancel == nil {
		return
	}
	d.cancel()
	d.cancel = nil
	if code := <-d.done; code != exitOK {
		t.Errorf("dev exit %d: %s", code, d.errs)
	}
}

// waitFor waits until dev's output matches re.
func (d *devRun) waitFor(t *testing.T, re string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := d.out.WaitFor(ctx, regexp.MustCompile(re))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// env reads the env file dev printed: the variables a shell beside it sources.
func (d *devRun) env(t *testing.T) map[string]string {
	t.Helper()
	path := d.waitFor(t, `(?m)^  \. (\S+)`)[1]
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

// TestDevShowsTheWholeFlow runs `keyrot dev` as a newcomer would (with
// faster timings): keys are created, the adopted key is rotated out, one
// short line per event, emails reach the sandbox's outbox and the API
// serves the current key.
func TestDevShowsTheWholeFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	d := startDev(t, "--rotate-every", "4s", "--deactivate-after", "1s", "--delete-after", "1s", "--propagation-delay", "0s", "--ses-rate", "0")
	d.waitFor(t, `(?m)^\d\d:\d\d:\d\d  ci-bot +key deleted +AKIA\w{16}$`)
	out := d.out.String()
	for _, want := range []string{"test double for AWS", "_sandbox/ses/outbox", "/credentials/ci-bot", "credential_process = keyrot credentials ci-bot --api " + d.addrs["api"], d.addrs["api"] + "/ui"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	// One short line per event: created (with what comes next), deactivated, deleted.
	for _, re := range []string{
		`(?m)^\d\d:\d\d:\d\d  ci-bot +key created +AKIA\w{16}  previous key AKIA\w{16} will be deactivated in 1s$`,
		`(?m)^\d\d:\d\d:\d\d  ci-bot +key deactivated +AKIA\w{16}  key AKIA\w{16} will be deleted in 1s$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no line matching %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("colour on an output that is not a terminal")
	}
	if strings.Contains(out, "email sent") || strings.Contains(d.errs.String(), "event=key_created") {
		t.Errorf("the console form shows log records:\n%s\nstderr:\n%s", out, d.errs)
	}

	// The API serves ci-bot's key with the API key from the env file.
	apiKey := d.env(t)["KEYROT_API_KEY"]
	req, _ := http.NewRequest("GET", d.addrs["api"]+"/credentials/ci-bot", nil)
	req.Header.Set("X-API-Key", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"AccessKeyId":"AKIA`) {
		t.Fatalf("API: %d %s", resp.StatusCode, body)
	}
	// The emails are in the outbox.
	resp, err = http.Get(d.addrs["sandbox"] + "/_sandbox/ses/outbox")
	if err != nil {
		t.Fatal(err)
	}
	var outbox []struct{ Subject string }
	if err := json.NewDecoder(resp.Body).Decode(&outbox); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(outbox) == 0 || !strings.HasPrefix(outbox[0].Subject, "[keyrot] ") {
		t.Fatalf("outbox = %+v", outbox)
	}
	var secret struct{ SecretAccessKey string }
	_ = json.Unmarshal(body, &secret)
	logs := d.out.String() + d.errs.String()
	if secret.SecretAccessKey == "" || strings.Contains(logs, secret.SecretAccessKey) || strings.Contains(logs, apiKey) {
		t.Fatal("a secret reached the output")
	}
}

// TestDevConfigServesStatus is the newcomer's second step: dev on free
// ports with a fleet, then `keyrot status --config` with the config file
// and environment dev printed. Status sees every seeded user, on dev's own
// timings (a rotation 40s after a key's creation, not the default 5m).
func TestDevConfigServesStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	d := startDev(t, "--users", "7", "--propagation-delay", "0s", "--ses-rate", "0")
	path := d.waitFor(t, `(?m)^  keyrot status --config (\S+)`)[1]
	env := d.env(t)
	d.waitFor(t, `(?m)  deploy-bot +key created `)

	// The AWS SDK reads the process environment: the shell's exports.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	for k, v := range env {
		if strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, v)
		}
	}
	out, errs := &testkit.Buffer{}, &testkit.Buffer{}
	m := &Main{Stdout: out, Stderr: errs, Open: openFile, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	start := time.Now()
	if code := m.Run(context.Background(), []string{"status", "--config", path, "-o", "json"}); code != exitOK {
		t.Fatalf("status exit %d: %s %s", code, out, errs)
	}
	var rows []statusRow
	if err := json.Unmarshal([]byte(out.String()), &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var users []string
	for _, r := range rows {
		users = append(users, r.User)
		if r.Error != "" {
			t.Errorf("%s: %s", r.User, r.Error)
		}
		if r.User != "deploy-bot" {
			continue
		}
		at, err := time.Parse(time.RFC3339, r.NextAt)
		if err != nil {
			t.Fatalf("deploy-bot next at %q: %v", r.NextAt, err)
		}
		if until := at.Sub(start); until <= 0 || until > devRotateEvery {
			t.Errorf("deploy-bot: %s at %s, %s from now: not dev's cadence of %s", r.Next, r.NextAt, until, devRotateEvery)
		}
	}
	if got, want := strings.Join(users, " "), "ci-bot deploy-bot svc-3 svc-4 svc-5 svc-6 svc-7"; got != want {
		t.Errorf("status users %q, want %q", got, want)
	}

	// The config dev wrote is its own: the same timings, users and API key.
	cfg, err := config.Load(path, openFile, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(cfg.Rotation.RotateEvery); got != devRotateEvery {
		t.Errorf("rotate_every %s", got)
	}
	if len(cfg.API.Keys) != 1 || cfg.API.Keys[0].Hash == "" || strings.Contains(readFile(t, path), env["KEYROT_API_KEY"]) {
		t.Errorf("api.keys %+v: want the API key's hash, never the key", cfg.API.Keys)
	}
	for _, p := range []string{path, filepath.Join(filepath.Dir(path), devEnvFile)} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", p, err, fi.Mode())
		}
	}
	// Without --dir the files are temporary.
	d.stop(t)
	if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", filepath.Dir(path), err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A busy port stops dev at once with the flag that moves it.
func TestDevBusyPortNamesTheFlag(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct{ flag, other string }{{"--listen", "--api-listen"}, {"--api-listen", "--listen"}} {
		t.Run(tc.flag, func(t *testing.T) {
			out, errs := &testkit.Buffer{}, &testkit.Buffer{}
			m := &Main{Stdout: out, Stderr: errs, Open: openFile, LookupEnv: func(string) (string, bool) { return "", false }}
			code := m.Run(context.Background(), []string{"dev", tc.flag, busy.Addr().String(), tc.other, "127.0.0.1:0"})
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if msg := errs.String(); !strings.Contains(msg, busy.Addr().String()+" is in use") || !strings.Contains(msg, "choose another address with "+tc.flag) {
				t.Errorf("message %q does not name %s", msg, tc.flag)
			}
		})
	}
}

func TestDevUsersFlag(t *testing.T) {
	for _, n := range []string{"0", "501", "x"} {
		m := &Main{Stdout: io.Discard, Stderr: io.Discard, Open: openFile, LookupEnv: func(string) (string, bool) { return "", false }}
		if code := m.Run(context.Background(), []string{"dev", "--users", n}); code != exitUsage {
			t.Errorf("--users %s: exit %d, want %d", n, code, exitUsage)
		}
	}
	users := devUsers(15)
	var one, two int
	for _, u := range users {
		switch u.OldKeys {
		case 1:
			one++
		case 2:
			two++
		}
	}
	if len(users) != 15 || users[0].Name != "ci-bot" || users[14].Name != "svc-15" || one != 5 || two != 3 {
		t.Errorf("devUsers(15): %d users, %d with an old key, %d with two: %+v", len(users), one, two, users)
	}
}

// `keyrot serve` (and run) on a busy api.listen: exit 2, naming the setting.
func TestServeBusyPortNamesTheSetting(t *testing.T) {
	tm := newTestMain(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, hash, _ := keyrothttp.GenerateAPIKey()
	cfg := tm.writeConfig(`
users: {names: [ci-bot]}
notify: {via: log}
api: {listen: "` + busy.Addr().String() + `", keys: [{name: k, hash: "` + hash + `", users: ["*"]}]}
`)
	if code := tm.run(context.Background(), "serve", "--config", cfg); code != exitUsage {
		t.Errorf("exit %d, want %d: %s", code, exitUsage, tm.stderr)
	}
	if msg := tm.stderr.String(); !strings.Contains(msg, "api.listen") || !strings.Contains(msg, "in use") || !strings.Contains(msg, "KEYROT_API_LISTEN") {
		t.Errorf("message does not name api.listen: %s", msg)
	}
}
