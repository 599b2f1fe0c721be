package metrics_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/metrics"
	"github.com/keyrot/keyrot/notify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type keys []keyrot.Credentials

func (k keys) Current() []keyrot.Credentials { return k }

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.New(reg); err == nil {
		t.Error("registering twice on one registry succeeded")
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	secret := "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYa1"
	src := keys{{UserName: "alice", AccessKeyID: "AKIAALICE", SecretAccessKey: secret, CreateDate: now.Add(-90 * time.Second)}}
	if err := m.WatchKeyAges(src, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	m.ObserveRequest("GET /credentials/{user}", 200, 3*time.Millisecond)
	m.ObserveRequest("GET /credentials/{user}", 200, time.Millisecond)
	m.ObserveRequest("GET /credentials/{user}", 403, time.Millisecond)
	m.CacheHit()
	m.CacheMiss()
	m.CacheMiss()
	m.ObserveEvent(keyrot.Event{Kind: keyrot.EventKeyCreated, User: "alice", KeyID: "AKIAALICE"})
	if err := m.Notifier().Notify(t.Context(), keyrot.Event{Kind: keyrot.EventKeyDeleted}); err != nil {
		t.Fatal(err)
	}
	m.ObserveNotification(keyrot.EventKeyCreated, nil)
	m.ObserveNotification(keyrot.EventKeyCreated, errors.New("ses: throttled"))
	m.ObserveDelivery("webhook:hooks.example.com", notify.ResultRetried)
	m.ObserveDelivery("webhook:hooks.example.com", notify.ResultOK)
	m.ObserveSync("github/acme/app", nil)
	m.ObserveSync("github/acme/app", errors.New("github: 500"))
	m.ObserveSync("github/acme/app", errors.New("github: 500"))

	want := `
# HELP keyrot_cache_hits_total Credential reads served from the API cache.
# TYPE keyrot_cache_hits_total counter
keyrot_cache_hits_total 1
# HELP keyrot_cache_misses_total Credential reads for a user the API cache holds no key for.
# TYPE keyrot_cache_misses_total counter
keyrot_cache_misses_total 2
# HELP keyrot_http_requests_total HTTP requests served by the keyrot API, by route pattern and status code.
# TYPE keyrot_http_requests_total counter
keyrot_http_requests_total{code="200",route="GET /credentials/{user}"} 2
keyrot_http_requests_total{code="403",route="GET /credentials/{user}"} 1
# HELP keyrot_key_age_seconds Age of each managed user's current access key.
# TYPE keyrot_key_age_seconds gauge
keyrot_key_age_seconds{user="alice"} 90
# HELP keyrot_notifications_total Notification deliveries, by event kind and result (ok or error).
# TYPE keyrot_notifications_total counter
keyrot_notifications_total{kind="key_created",result="error"} 1
keyrot_notifications_total{kind="key_created",result="ok"} 1
# HELP keyrot_webhook_deliveries_total Event deliveries to webhooks, Slack and EventBridge, by target and result (ok, retried, failed, dropped); one count per attempt.
# TYPE keyrot_webhook_deliveries_total counter
keyrot_webhook_deliveries_total{result="ok",target="webhook:hooks.example.com"} 1
keyrot_webhook_deliveries_total{result="retried",target="webhook:hooks.example.com"} 1
# HELP keyrot_rotations_total Key events (created, deactivated, deleted, rotation_failed, warning), by event kind.
# TYPE keyrot_rotations_total counter
keyrot_rotations_total{event="key_created"} 1
keyrot_rotations_total{event="key_deleted"} 1
# HELP keyrot_sync_deliveries_total Deliveries of a new key to a sync target (GitHub, GitLab), by target id and result (ok or error).
# TYPE keyrot_sync_deliveries_total counter
keyrot_sync_deliveries_total{result="error",target="github/acme/app"} 2
keyrot_sync_deliveries_total{result="ok",target="github/acme/app"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"keyrot_cache_hits_total", "keyrot_cache_misses_total", "keyrot_http_requests_total", "keyrot_key_age_seconds",
		"keyrot_notifications_total", "keyrot_rotations_total", "keyrot_webhook_deliveries_total", "keyrot_sync_deliveries_total"); err != nil {
		t.Error(err)
	}
	if got, want := testutil.CollectAndCount(reg, "keyrot_http_request_duration_seconds"), 1; got != want {
		t.Errorf("%d duration series, want %d", got, want)
	}

	// No secret and no key id in any metric.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if s := f.String(); strings.Contains(s, secret) || strings.Contains(s, "AKIAALICE") {
			t.Errorf("metric %s carries a key: %s", f.GetName(), s)
		}
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	var m *metrics.Metrics
	m.ObserveRequest("r", 200, time.Second)
	m.CacheHit()
	m.CacheMiss()
	m.ObserveEvent(keyrot.Event{Kind: keyrot.EventWarning})
	m.ObserveNotification(keyrot.EventWarning, nil)
	m.ObserveDelivery("slack", notify.ResultFailed)
	if err := m.WatchKeyAges(keys{}, nil); err != nil {
		t.Errorf("WatchKeyAges on nil: %v", err)
	}
	if _, err := metrics.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

// TestPublicAndFilter: Public drops every series labelled with a user or an
// API key, and the families left empty; Filter keeps what its rule allows.
func TestPublicAndFilter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := m.WatchKeyAges(keys{{UserName: "alice", CreateDate: now}, {UserName: "bob", CreateDate: now}}, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchAPIKeyExpiry(func() []metrics.APIKeyExpiry {
		return []metrics.APIKeyExpiry{{Name: "ci", Expires: now.Add(time.Hour)}, {Name: "API_KEY"}}
	}, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	m.CacheHit()
	names := func(g prometheus.Gatherer) string {
		t.Helper()
		families, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range families {
			for _, s := range f.GetMetric() {
				var labels []string
				for _, l := range s.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				out = append(out, f.GetName()+"{"+strings.Join(labels, ",")+"}")
			}
		}
		return strings.Join(out, " ")
	}
	if got, want := names(metrics.Public(reg)), "keyrot_cache_hits_total{} keyrot_cache_misses_total{} keyrot_rotations_overdue{}"; got != want {
		t.Errorf("Public = %s, want %s", got, want)
	}
	onlyAlice := metrics.Filter(reg, func(label, value string) bool { return label != metrics.LabelUser || value == "alice" })
	if got, want := names(onlyAlice), "keyrot_api_key_expiry_seconds{key=API_KEY} keyrot_api_key_expiry_seconds{key=ci} keyrot_cache_hits_total{} keyrot_cache_misses_total{} keyrot_key_age_seconds{user=alice} keyrot_rotation_overdue_seconds{user=alice} keyrot_rotations_overdue{}"; got != want {
		t.Errorf("Filter = %s, want %s", got, want)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP keyrot_api_key_expiry_seconds Seconds until each API key of the REST API expires (negative once expired; +Inf without expiry).
# TYPE keyrot_api_key_expiry_seconds gauge
keyrot_api_key_expiry_seconds{key="API_KEY"} +Inf
keyrot_api_key_expiry_seconds{key="ci"} 3600
`), "keyrot_api_key_expiry_seconds"); err != nil {
		t.Error(err)
	}
}

// TestOverdueRotations: a stalled engine shows in the metrics, by user for
// authenticated scrapes and as a count for any.
func TestOverdueRotations(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	src := keys{
		{UserName: "alice", CreateDate: now.Add(-10 * time.Minute)}, // due 5m01s after creation: overdue
		{UserName: "bob", CreateDate: now.Add(-time.Minute)},
	}
	for i := range src {
		src[i] = src[i].Annotate(now)
	}
	if err := m.WatchKeyAges(src, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP keyrot_rotation_overdue_seconds How long each managed user's rotation is past due (0: on time).
# TYPE keyrot_rotation_overdue_seconds gauge
keyrot_rotation_overdue_seconds{user="alice"} 299
keyrot_rotation_overdue_seconds{user="bob"} 0
# HELP keyrot_rotations_overdue How many managed users' rotations are past due (the engine is stopped or failing).
# TYPE keyrot_rotations_overdue gauge
keyrot_rotations_overdue 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keyrot_rotation_overdue_seconds", "keyrot_rotations_overdue"); err != nil {
		t.Error(err)
	}
}

// TestLabelsRedacted: a user or API key name that is a secret (pasted in
// the wrong place) is not exported as a label value.
func TestLabelsRedacted(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	const apiKey = "krt_q3v9XbYp1Tz0dE4Jm8nR2sKf7LwHc6gUaViN5oQ"
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := m.WatchKeyAges(keys{{UserName: secret, CreateDate: now}}, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchAPIKeyExpiry(func() []metrics.APIKeyExpiry { return []metrics.APIKeyExpiry{{Name: apiKey}} }, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if strings.Contains(l.GetValue(), "K7MDENG") || strings.Contains(l.GetValue(), "krt_") {
					t.Errorf("%s{%s=%q}: a secret as a label", f.GetName(), l.GetName(), l.GetValue())
				}
				if l.GetValue() == keyrot.RedactedText {
					n++
				}
			}
		}
	}
	if n != 3 {
		t.Errorf("%d redacted label values, want 3 (key age, overdue, API key expiry)", n)
	}
}
