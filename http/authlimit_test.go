package http_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	keyrothttp "github.com/keyrot/keyrot/http"
)

var testLimit = keyrothttp.AuthFailureLimit{Burst: 3, Every: time.Minute, BaseDelay: time.Second, MaxDelay: 8 * time.Second}

// TestFailedAuthLimit: a client address gets Burst wrong keys free, then
// each failure blocks it for twice as long as the last, up to MaxDelay;
// while blocked even a valid key gets 429 with Retry-After (a guesser learns
// nothing), other addresses are not affected, and a quiet client starts over.
func TestFailedAuthLimit(t *testing.T) {
	key, cfg := newKey(t, "ci", "*")
	h := newHandlerEnv(t, []keyrothttp.APIKey{cfg}, func(c *keyrothttp.ServerConfig) { c.AuthFailures = testLimit })
	const a, b = "198.51.100.7:5000", "203.0.113.9:6000"
	wrong := xkey("krt_wrong")
	status := func(remote string, headers ...string) int {
		t.Helper()
		return h.get(t, "/credentials/alice", remote, headers...).Code
	}
	for i := range 3 {
		if got := status(a, wrong); got != 401 {
			t.Fatalf("free failure %d: %d, want 401", i+1, got)
		}
	}
	var waits []string
	for range 5 {
		if got := status(a, wrong); got != 401 {
			t.Fatalf("the failure that blocks: %d, want 401", got)
		}
		w := h.get(t, "/credentials/alice", a, xkey(key)) // the right key, while blocked
		if w.Code != 429 || !strings.Contains(w.Body.String(), `"too_many_failures"`) {
			t.Fatalf("blocked client with a valid key: %d %s", w.Code, w.Body)
		}
		if got := status(a); got != 429 {
			t.Fatalf("blocked client without a key: %d", got)
		}
		retry := w.Header().Get("Retry-After")
		waits = append(waits, retry)
		if got := status(b, xkey(key)); got != 200 {
			t.Fatalf("another address while a is blocked: %d", got)
		}
		d, _ := time.ParseDuration(retry + "s")
		h.clock.Advance(d)
	}
	if got, want := strings.Join(waits, ","), "1,2,4,8,8"; got != want {
		t.Errorf("Retry-After = %s, want %s (doubling up to MaxDelay)", got, want)
	}
	if got := status(a, xkey(key)); got != 200 {
		t.Errorf("the block over, the right key: %d, want 200", got)
	}
	// Quiet long enough for the bucket to fill and MaxDelay to pass: three
	// free failures again.
	h.clock.Advance(3*time.Minute + 8*time.Second)
	for i := range 3 {
		if got := status(a, wrong); got != 401 {
			t.Fatalf("after a quiet spell, failure %d: %d, want 401", i+1, got)
		}
	}
	if got := status(a, wrong); got != 401 {
		t.Fatal(got)
	}
	if got := h.get(t, "/credentials/alice", a).Header().Get("Retry-After"); got != "1" {
		t.Errorf("after a quiet spell the delay starts over: Retry-After %q, want 1", got)
	}
}

// TestFailedAuthLimitIPv6: an IPv6 client counts by its /64, which one host
// usually holds whole.
func TestFailedAuthLimitIPv6(t *testing.T) {
	key, cfg := newKey(t, "ci", "*")
	h := newHandlerEnv(t, []keyrothttp.APIKey{cfg}, func(c *keyrothttp.ServerConfig) { c.AuthFailures = testLimit })
	for i := range 4 {
		h.get(t, "/credentials/alice", fmt.Sprintf("[2001:db8:1:2::%x]:443", i+1), xkey("krt_wrong"))
	}
	if got := h.get(t, "/credentials/alice", "[2001:db8:1:2::ffff]:443", xkey(key)).Code; got != 429 {
		t.Errorf("same /64: %d, want 429", got)
	}
	if got := h.get(t, "/credentials/alice", "[2001:db8:1:3::1]:443", xkey(key)).Code; got != 200 {
		t.Errorf("another /64: %d, want 200", got)
	}
}

// TestFailedAuthLogSampled: a flood of wrong keys writes a record for a
// client now and then, carrying the count of those left out, and a bounded
// number across many clients; the request metrics still count every one.
func TestFailedAuthLogSampled(t *testing.T) {
	key, cfg := newKey(t, "admin", "*")
	limit := keyrothttp.AuthFailureLimit{Off: true, LogEvery: 10 * time.Second, LogRate: 5}
	h := newHandlerEnv(t, []keyrothttp.APIKey{cfg}, func(c *keyrothttp.ServerConfig) { c.AuthFailures = limit })
	const guesser = "198.51.100.7:5000"
	// 1,000 guesses over 20 s from one address.
	for i := range 1000 {
		h.get(t, "/credentials/alice", guesser, xkey(fmt.Sprintf("krt_guess%04d", i)))
		h.clock.Advance(20 * time.Millisecond)
	}
	records := failedRecords(t, h.logs.String())
	if got := len(records); got != 2 {
		t.Fatalf("%d records for 1,000 failures in 20 s, want 2 (the first, one 10 s later): %v", got, records)
	}
	if got, want := records[0]["suppressed"], float64(0); got != want {
		t.Errorf("first record suppressed = %v, want %v", got, want)
	}
	if got, want := records[1]["suppressed"], float64(499); got != want {
		t.Errorf("second record suppressed = %v, want %v (the failures between)", got, want)
	}
	// 1,000 addresses at once: no more records than the overall rate allows.
	h.logs.Reset()
	for i := range 1000 {
		h.get(t, "/credentials", fmt.Sprintf("10.0.%d.%d:1", i/250, i%250), bearer("krt_wrong"))
	}
	if got := len(failedRecords(t, h.logs.String())); got != 5 {
		t.Errorf("%d records from 1,000 addresses at one instant, want 5 (LogRate's burst)", got)
	}
	if strings.Contains(h.logs.String(), "krt_guess") {
		t.Error("a presented key is in the log")
	}
	m := h.get(t, "/metrics", "192.0.2.1:1", bearer(key)).Body.String()
	for _, want := range []string{
		`keyrot_http_requests_total{code="401",route="GET /credentials/{user}"} 1000`,
		`keyrot_http_requests_total{code="401",route="GET /credentials"} 1000`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func failedRecords(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range logRecords(t, logs) {
		if r["outcome"] == "auth_failed" {
			out = append(out, r)
		}
	}
	return out
}

// TestMetricsNamesNeedAKey: /metrics tells a scrape without an API key
// nothing about which users or API keys exist; a key sees the series its
// scope covers; a wrong key is refused; api.metrics_public shows all.
func TestMetricsNamesNeedAKey(t *testing.T) {
	admin, adminCfg := newKey(t, "admin", "*")
	reader, readerCfg := newKey(t, "reader", "alice", "ghost")
	keys := []keyrothttp.APIKey{adminCfg, readerCfg}
	h := newHandlerEnv(t, keys)
	h.get(t, "/credentials/alice", "192.0.2.1:1", xkey(admin)) // some traffic to count
	scrape := func(env *handlerEnv, headers ...string) string {
		t.Helper()
		w := env.get(t, "/metrics", "192.0.2.1:1", headers...)
		if w.Code != 200 {
			t.Fatalf("/metrics: %d %s", w.Code, w.Body)
		}
		return w.Body.String()
	}
	anon := scrape(h)
	for _, want := range []string{`keyrot_http_requests_total{code="200",route="GET /credentials/{user}"} 1`, "keyrot_cache_hits_total 1"} {
		if !strings.Contains(anon, want) {
			t.Errorf("anonymous scrape lacks %s", want)
		}
	}
	for _, name := range []string{"alice", "bob", "ci-deploy", `user="`, `key="`, "admin", "reader", "keyrot_key_age_seconds", "keyrot_api_key_expiry_seconds"} {
		if strings.Contains(anon, name) {
			t.Errorf("anonymous scrape shows %q", name)
		}
	}
	all := scrape(h, bearer(admin))
	for _, want := range []string{`keyrot_key_age_seconds{user="alice"}`, `keyrot_key_age_seconds{user="bob"}`, `keyrot_key_age_seconds{user="ci-deploy"}`, `keyrot_api_key_expiry_seconds{key="reader"}`} {
		if !strings.Contains(all, want) {
			t.Errorf("full-scope scrape lacks %s", want)
		}
	}
	scoped := scrape(h, xkey(reader))
	if !strings.Contains(scoped, `keyrot_key_age_seconds{user="alice"}`) || !strings.Contains(scoped, `keyrot_api_key_expiry_seconds{key="reader"}`) {
		t.Errorf("scoped scrape lacks its own series:\n%s", scoped)
	}
	for _, name := range []string{`"bob"`, `"ci-deploy"`, `key="admin"`} {
		if strings.Contains(scoped, name) {
			t.Errorf("scoped scrape shows %s", name)
		}
	}
	w := h.get(t, "/metrics", "192.0.2.1:1", bearer("krt_wrong"))
	var body keyrothttp.ErrorResponse
	if w.Code != 401 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error.Code != "unauthorized" {
		t.Errorf("wrong key: %d %s", w.Code, w.Body)
	}
	public := newHandlerEnv(t, keys, func(c *keyrothttp.ServerConfig) { c.MetricsPublic = true })
	if got := scrape(public); !strings.Contains(got, `keyrot_key_age_seconds{user="bob"}`) {
		t.Errorf("metrics_public: anonymous scrape lacks the per-user series")
	}
}
