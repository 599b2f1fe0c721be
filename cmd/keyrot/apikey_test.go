package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/mock"
)

var printedKey = regexp.MustCompile(`krt_[A-Za-z0-9_-]{43}`)

// apikeyRun runs keyrot apikey ... and returns the key it printed.
func (tm *testMain) apikeyRun(args ...string) string {
	tm.t.Helper()
	tm.stdout.Reset()
	if code := tm.run(context.Background(), append([]string{"apikey"}, args...)...); code != exitOK {
		tm.t.Fatalf("apikey %v: exit %d: %s %s", args, code, tm.stdout, tm.stderr)
	}
	keys := printedKey.FindAllString(tm.stdout.String(), -1)
	if len(keys) != 1 {
		tm.t.Fatalf("apikey %v printed %d keys, want the new one once: %s", args, len(keys), tm.stdout)
	}
	return keys[0]
}

// apiGet sends GET path to the API with key and returns the status and body.
func apiGet(t *testing.T, api, path, key string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", api+path, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// apiStatus is the status of GET path on the API with key, and the error
// code of a refusal.
func apiStatus(t *testing.T, api, path, key string) (int, string) {
	t.Helper()
	status, body := apiGet(t, api, path, key)
	var e keyrothttp.ErrorResponse
	_ = json.Unmarshal(body, &e)
	return status, e.Error.Code
}

// newAPIKeyTest is a sandbox with the user ci-bot, a driven clock for the
// commands, and a config with the API keys in the secret keyrot/api-keys
// and notify as given (a YAML flow map).
func newAPIKeyTest(t *testing.T, notify string) (tm *testMain, clock *mock.Clock, cfg string) {
	tm = newTestMain(t)
	clock = mock.NewClock(time.Now().UTC().Truncate(time.Second))
	tm.clock = clock
	tm.createUser("ci-bot")
	cfg = tm.writeConfig(`
users: {names: [ci-bot]}
rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}
notify: ` + notify + `
api: {listen: "127.0.0.1:0", keys_secret: keyrot/api-keys, refresh: 1m}
log: {format: json}
`)
	return tm, clock, cfg
}

// TestAPIKeyRotateWithRunningServer: `keyrot apikey rotate` against the
// sandbox's keys secret, with `keyrot serve` running on a driven clock: on
// its next refresh the server accepts the old key and the new one, and once
// the overlap is over only the new one; the old key's refusal is audited.
func TestAPIKeyRotateWithRunningServer(t *testing.T) {
	tm, clock, cfg := newAPIKeyTest(t, "{via: log}")
	ctx := context.Background()
	if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
		t.Fatalf("rotate: %d %s", code, tm.stderr)
	}
	oldKey := tm.apikeyRun("new", "ci", "--keys-secret", "keyrot/api-keys", "--users", "ci-*")
	addrs, stop := tm.start("serve", "--config", cfg)
	api := addrs["api"]
	if code, _ := apiStatus(t, api, "/credentials/ci-bot", oldKey); code != 200 {
		t.Fatalf("the key before rotation: %d", code)
	}
	// refresh advances the driven clock by d and waits until the server's
	// key refresh has run and waits for the next one (two waiters on the
	// clock: the key watcher and the cache's poll).
	refresh := func(d time.Duration) {
		t.Helper()
		bctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := clock.BlockUntil(bctx, 2); err != nil {
			t.Fatal(err)
		}
		clock.Advance(d)
		if err := clock.BlockUntil(bctx, 2); err != nil {
			t.Fatal(err)
		}
	}

	newKey := tm.apikeyRun("rotate", "ci", "--config", cfg, "--overlap", "7d")
	var doc struct{ Keys []keyrothttp.APIKey }
	if err := json.Unmarshal([]byte(tm.secretValue("keyrot/api-keys")), &doc); err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	if len(doc.Keys) != 2 {
		t.Fatalf("keys secret holds %+v, want the new key and the retiring one", doc.Keys)
	}
	successor, retiring := doc.Keys[0], doc.Keys[1]
	if successor.Name != "ci" || successor.Hash != keyrothttp.HashAPIKey(newKey) || !successor.Created.Equal(now) ||
		!successor.Expires.Equal(now.Add(90*24*time.Hour)) || strings.Join(successor.Users, ",") != "ci-*" {
		t.Errorf("successor = %+v", successor)
	}
	if retiring.Name != "ci.old" || retiring.Hash != keyrothttp.HashAPIKey(oldKey) || retiring.ReplacedBy != "ci" ||
		!retiring.Expires.Equal(now.Add(7*24*time.Hour)) {
		t.Errorf("retiring key = %+v", retiring)
	}

	refresh(time.Minute)
	for name, key := range map[string]string{"old": oldKey, "new": newKey} {
		if code, _ := apiStatus(t, api, "/credentials/ci-bot", key); code != 200 {
			t.Errorf("during the overlap, the %s key: %d, want 200", name, code)
		}
	}
	refresh(7 * 24 * time.Hour)
	if code, errCode := apiStatus(t, api, "/credentials/ci-bot", oldKey); code != 401 || errCode != "key_expired" {
		t.Errorf("after the overlap, the old key: %d %s, want 401 key_expired", code, errCode)
	}
	if code, _ := apiStatus(t, api, "/credentials/ci-bot", newKey); code != 200 {
		t.Errorf("after the overlap, the new key: %d, want 200", code)
	}
	stop() // flushes the audit records
	logs := tm.stderr.String()
	for _, want := range []string{`"api_key":"ci.old","user":"ci-bot"`, `"outcome":"expired"`, `"api_key":"ci","user":"ci-bot"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	for _, k := range []string{oldKey, newKey} {
		if strings.Contains(logs, k) {
			t.Error("an API key is in the log")
		}
	}
}

// TestAPIKeyRotateInConfigFile: with the keys in the config file, rotate
// prints the lines to paste, and refuses to rotate again while the retiring
// key still works.
func TestAPIKeyRotateInConfigFile(t *testing.T) {
	tm := newTestMain(t)
	tm.clock = mock.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	tm.apikeyRun("new", "ci", "--lifetime", "30d")
	out := tm.stdout.String()
	for _, want := range []string{"- name: ci", "hash: sha256:", "created: 2026-03-01T12:00:00Z", "expires: 2026-03-31T12:00:00Z"} {
		if !strings.Contains(out, want) {
			t.Fatalf("apikey new lacks %q:\n%s", want, out)
		}
	}
	lines := out[strings.Index(out, "  - name"):]
	cfg := tm.writeConfig("users: {names: [ci-bot]}\nnotify: {via: log}\napi:\n  keys:\n" + lines)
	newKey := tm.apikeyRun("rotate", "ci", "--config", cfg, "--overlap", "2d")
	out = tm.stdout.String()
	for _, want := range []string{"- name: ci\n", "hash: " + keyrothttp.HashAPIKey(newKey), "- name: ci.old", "expires: 2026-03-03T12:00:00Z", "replaced_by: ci", "Replace the entry for ci"} {
		if !strings.Contains(out, want) {
			t.Errorf("apikey rotate lacks %q:\n%s", want, out)
		}
	}
	rotated := tm.writeConfig("users: {names: [ci-bot]}\nnotify: {via: log}\napi:\n  keys:\n" + out[strings.Index(out, "  - name"):strings.Index(out, "The old key")])
	tm.stderr.Reset()
	if code := tm.run(context.Background(), "apikey", "rotate", "ci", "--config", rotated); code != exitFailed || !strings.Contains(tm.stderr.String(), "still valid until 2026-03-03T12:00:00Z") {
		t.Errorf("rotating again during the overlap: exit %d: %s", code, tm.stderr)
	}
	tm.stderr.Reset()
	if code := tm.run(context.Background(), "apikey", "new", "forever", "--lifetime", "0"); code != exitOK || !strings.Contains(tm.stderr.String(), "never expires") {
		t.Errorf("lifetime 0: exit %d, stderr %q", code, tm.stderr)
	}
}

// TestAPIKeyExpiryWarnedOnce: `keyrot serve` with a key inside the warning
// window emails the admin through SES once, however many refreshes check it.
func TestAPIKeyExpiryWarnedOnce(t *testing.T) {
	tm, clock, cfg := newAPIKeyTest(t, "{via: ses, sender: keyrot@example.com, admin: security@example.com, send_rate: 100}")
	key := tm.apikeyRun("new", "ci", "--keys-secret", "keyrot/api-keys", "--lifetime", "10d")
	tm.apikeyRun("new", "later", "--keys-secret", "keyrot/api-keys", "--lifetime", "30d")
	_, stop := tm.start("serve", "--config", cfg)
	bctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range 5 {
		if err := clock.BlockUntil(bctx, 2); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	if err := clock.BlockUntil(bctx, 2); err != nil {
		t.Fatal(err)
	}
	stop() // delivers what the notifier queued
	var warnings []string
	for _, m := range tm.sb.Outbox() {
		if strings.Contains(m.Subject, "API key") {
			warnings = append(warnings, m.Subject+" to "+strings.Join(m.To, ","))
			if strings.Contains(m.Text, key) || strings.Contains(m.Text, "sha256:") {
				t.Error("the email carries the API key or its hash")
			}
		}
	}
	if got, want := strings.Join(warnings, "; "), "[keyrot] WARNING API key expiring: ci to security@example.com"; got != want {
		t.Errorf("API key emails after 6 checks: %q, want %q", got, want)
	}
}
