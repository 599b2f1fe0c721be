package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/testkit"
)

// TestLogUnderLoad runs the daemon, engine and API, while many clients
// read credentials at once, good and bad, and probe its health, until the
// engine has rotated every user: engine, access and audit records are
// written concurrently through the real handlers. Every line of its log is
// then exactly one JSON object with no key twice, no write to stderr ended
// inside a record, and no audit record is lost.
func TestLogUnderLoad(t *testing.T) {
	tm := newTestMain(t)
	const nUsers, clients = 8, 16
	var users []string
	for i := range nUsers {
		users = append(users, fmt.Sprintf("svc-%d", i))
		tm.createUser(users[i])
	}
	key, hash, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := tm.writeConfig(fmt.Sprintf(`
users: {names: [%s]}
rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d, concurrency: 4}
notify: {via: log}
api:
  listen: 127.0.0.1:0
  rate_limit: 1000000000
  burst: 1000000000
  keys: [{name: load, hash: %q, users: ["*"], list: true}]
log: {format: json, level: debug}
`, strings.Join(users, ", "), hash))
	addrs, stop := tm.start("run", "--config", cfg)
	api := addrs["api"]

	get := func(path, key string) (int, error) {
		req, err := http.NewRequest("GET", api+path, nil)
		if err != nil {
			return 0, err
		}
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}
	rotated := make(chan struct{})
	var reads, failures atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-rotated:
					if i >= 20 {
						return
					}
				default:
				}
				paths := []struct{ path, key string }{
					{"/credentials/" + users[(c+i)%nUsers], key},
					{"/credentials/nobody?format=env", key},
					{"/healthz", ""},
				}
				for _, p := range paths {
					if _, err := get(p.path, p.key); err != nil {
						failures.Add(1)
						return
					}
				}
				reads.Add(1)
			}
		})
	}
	// The load goes on until the engine has logged every user's new key.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := regexp.MustCompile(fmt.Sprintf(`(?s)(?:"event":"key_created".*){%d}`, nUsers))
	_, err = tm.stderr.WaitFor(ctx, all)
	close(rotated)
	wg.Wait()
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d clients failed", n)
	}

	if n := tm.stderr.PartialWrites(); n != 0 {
		t.Errorf("%d writes to stderr ended inside a record", n)
	}
	recs, err := testkit.JSONLines(tm.stderr.Bytes())
	if err != nil {
		t.Fatalf("the log: %v", err)
	}
	count := map[string]int{}
	for _, r := range recs {
		msg, _ := r["msg"].(string)
		if msg == "" || len(msg) > 60 || strings.Contains(msg, "\n") {
			t.Errorf("message not short: %v", r)
		}
		if r["system"] == nil && msg != "keyrot running" && msg != "api listening" {
			count["without system"]++
		}
		count[fmt.Sprint(r["system"], "/", msg)]++
		if r["route"] == "GET /healthz" && r["level"] != "DEBUG" {
			t.Errorf("a health probe at %v", r["level"])
		}
	}
	t.Logf("%d records, %d client rounds: %v", len(recs), reads.Load(), count)
	granted := count["audit/credentials read"]
	if want := int(reads.Load()) * 2; granted < want {
		t.Errorf("%d audit records, want at least %d (a read and a not-found per round)", granted, want)
	}
	if got := count["<nil>/api listening"]; got != 1 {
		t.Errorf(`"api listening" logged %d times, want once`, got)
	}
	if got := count["rotator/key created"]; got != nUsers {
		t.Errorf("%d engine records of a new key, want %d", got, nUsers)
	}
	if strings.Contains(tm.stderr.String(), key) {
		t.Error("the API key is in the log")
	}
}

// TestLogFormatFlag: --log-format overrides log.format for a command that
// logs, and anything else is a usage error.
func TestLogFormatFlag(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	cfg := tm.writeConfig(testConfig) // log.format: json
	ctx := context.Background()
	if code := tm.run(ctx, "rotate", "--config", cfg, "--log-format", "text"); code != exitOK {
		t.Fatalf("rotate --log-format text: %d %s", code, tm.stderr)
	}
	lines := strings.Split(strings.TrimSpace(tm.stderr.String()), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "time=") {
		t.Errorf("with --log-format text, stderr:\n%s", tm.stderr)
	}
	tm.stderr.Reset()
	if code := tm.run(ctx, "rotate", "--config", cfg, "--force"); code != exitOK {
		t.Fatalf("rotate: %d %s", code, tm.stderr)
	}
	if _, err := testkit.JSONLines(tm.stderr.Bytes()); err != nil || tm.stderr.String() == "" {
		t.Errorf("log.format json: %v\n%s", err, tm.stderr)
	}
	tm.stderr.Reset()
	if code := tm.run(ctx, "rotate", "--config", cfg, "--log-format", "xml"); code != exitUsage {
		t.Errorf("--log-format xml: exit %d, want %d", code, exitUsage)
	}
	if !strings.Contains(tm.stderr.String(), "log-format") {
		t.Errorf("the usage error does not name the flag: %s", tm.stderr)
	}
}

// TestRotateErrorRedacted: what rotate prints for an error goes through
// the redaction, here a secret pasted as the user name.
func TestRotateErrorRedacted(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	cfg := tm.writeConfig(testConfig)
	if code := tm.run(context.Background(), "rotate", "--config", cfg, "--user", secret); code == exitOK {
		t.Fatal("rotate --user <not managed> succeeded")
	}
	out := tm.stdout.String() + tm.stderr.String()
	if strings.Contains(out, secret) || !strings.Contains(out, "[redacted]") {
		t.Errorf("rotate's output:\n%s", out)
	}
}
