package http_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/mock"
)

// TestExpiredKey: an expired API key gets 401 saying it expired and nothing
// more, on every route that takes a key, and each refusal leaves an audit
// record naming the key. It is no guess: the client is not limited for it.
func TestExpiredKey(t *testing.T) {
	soon, soonCfg := newKey(t, "soon", "*")
	other, otherCfg := newKey(t, "other", "*")
	soonCfg.Created, soonCfg.Expires = t0, t0.Add(time.Hour)
	h := newHandlerEnv(t, []keyrothttp.APIKey{soonCfg, otherCfg})
	const client = "192.0.2.10:4000"
	if got := h.get(t, "/credentials/alice", client, xkey(soon)).Code; got != 200 {
		t.Fatalf("before expiry: %d", got)
	}
	h.clock.Set(t0.Add(time.Hour)) // the expiry instant itself is expired
	for _, path := range []string{"/credentials/alice", "/credentials/alice?format=credential_process", "/credentials", "/metrics"} {
		w := h.get(t, path, client, bearer(soon))
		if w.Code != 401 {
			t.Fatalf("%s after expiry: %d %s", path, w.Code, w.Body)
		}
		var body keyrothttp.ErrorResponse
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if got, want := body.Error, (keyrothttp.ErrorBody{Code: "key_expired", Message: "API key expired"}); got != want {
			t.Errorf("%s: error = %+v, want %+v", path, got, want)
		}
		if strings.Contains(w.Body.String(), "T13:") || strings.Contains(w.Body.String(), "soon") {
			t.Errorf("%s: the body says more than that the key expired: %s", path, w.Body)
		}
	}
	var expired []map[string]any
	for _, r := range logRecords(t, h.logs.String()) {
		if r["outcome"] == "expired" {
			expired = append(expired, r)
		}
	}
	if len(expired) != 3 {
		t.Fatalf("%d audit records of expired reads, want 3 (alice twice, the list): %s", len(expired), h.logs)
	}
	for i, user := range []string{"alice", "alice", "*"} {
		r := expired[i]
		if r["system"] != "audit" || r["api_key"] != "soon" || r["user"] != user || r["status"] != float64(401) {
			t.Errorf("audit record %d = %v", i, r)
		}
	}
	if strings.Contains(h.logs.String(), soon) {
		t.Error("the expired key is in the log")
	}
	for range 30 {
		h.get(t, "/credentials/alice", client, xkey(soon))
	}
	if got := h.get(t, "/credentials/alice", client, xkey(other)).Code; got != 200 {
		t.Errorf("another key from the same client after expired-key requests: %d, want 200", got)
	}
}

func TestExpiryWarnings(t *testing.T) {
	now := t0
	keys := []keyrothttp.APIKey{
		{Name: "env", Users: []string{"*"}}, // API_KEY: no lifetime
		{Name: "later", Expires: now.Add(15 * 24 * time.Hour)},
		{Name: "edge", Expires: now.Add(14 * 24 * time.Hour)},
		{Name: "soon", Expires: now.Add(time.Hour)},
		{Name: "gone", Expires: now.Add(-time.Hour)},
		{Name: "ci.old", Expires: now.Add(time.Hour), ReplacedBy: "ci"},
	}
	got := keyrothttp.ExpiryWarnings(keys, now, 14*24*time.Hour)
	var names []string
	for _, e := range got {
		names = append(names, e.APIKey)
		if e.Kind != keyrot.EventWarning || e.Warning != keyrot.WarnAPIKeyExpiring || e.User != "" || !e.Time.Equal(now) {
			t.Errorf("event = %+v", e)
		}
	}
	if got, want := strings.Join(names, ","), "edge,soon,gone"; got != want {
		t.Fatalf("warned about %s, want %s", got, want)
	}
	if got, want := got[1].Summary, `API key "soon" expires at 2025-03-01T13:00:00Z.`; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if !got[1].NextAt.Equal(now.Add(time.Hour)) {
		t.Errorf("NextAt = %s", got[1].NextAt)
	}
	if s := got[2].Summary; !strings.Contains(s, "expired at 2025-03-01T11:00:00Z") || !got[2].NextAt.IsZero() {
		t.Errorf("expired key's warning = %+v", got[2])
	}
	// The summary does not move with time, so a notifier's quiet period holds.
	if again := keyrothttp.ExpiryWarnings(keys, now.Add(time.Minute), 14*24*time.Hour); again[1].Summary != got[1].Summary {
		t.Errorf("summary changed between checks: %q, %q", got[1].Summary, again[1].Summary)
	}
}

// TestWarnExpiringKeys: the server reports, at its clock, the keys it
// accepts that expire within the window, and exports every key's time left
// by name (+Inf without a lifetime), never by hash.
func TestWarnExpiringKeys(t *testing.T) {
	admin, adminCfg := newKey(t, "admin", "*")
	_, ciCfg := newKey(t, "ci", "ci-*")
	ciCfg.Expires = t0.Add(20 * 24 * time.Hour)
	h := newHandlerEnv(t, []keyrothttp.APIKey{adminCfg, ciCfg})
	n := &mock.Notifier{}
	if err := h.srv.WarnExpiringKeys(t.Context(), n, 14*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := len(n.Events()); got != 0 {
		t.Fatalf("%d warnings 20 days before expiry", got)
	}
	h.clock.Set(t0.Add(10 * 24 * time.Hour))
	if err := h.srv.WarnExpiringKeys(t.Context(), n, 14*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ev := n.Events(); len(ev) != 1 || ev[0].APIKey != "ci" || !ev[0].Time.Equal(h.clock.Now()) {
		t.Fatalf("warnings = %+v", ev)
	}
	m := h.get(t, "/metrics", "192.0.2.1:1", bearer(admin)).Body.String()
	for _, want := range []string{
		`keyrot_api_key_expiry_seconds{key="admin"} +Inf`,
		`keyrot_api_key_expiry_seconds{key="ci"} 864000`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, strings.TrimPrefix(ciCfg.Hash, "sha256:")[:16]) {
		t.Error("metrics carry a key's hash")
	}
}
