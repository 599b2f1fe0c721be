package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/webhook"
)

var (
	t0     = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	secret = []byte("whsec-test-0123456789abcdef")
)

// receiver is a webhook endpoint that verifies every delivery as the docs
// tell a receiver to, then answers with the next of its planned statuses.
type receiver struct {
	t     *testing.T
	clock keyrot.Clock

	mu       sync.Mutex
	answers  []int            // statuses to answer in turn; 200 once spent
	hang     chan struct{}    // if set, the first request waits for it
	verified []notify.Payload // deliveries that passed verification
	headers  []http.Header
	rejected []error
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	hang := rc.hang
	rc.hang = nil
	rc.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return
	}
	if err := webhook.Verify(secret, r.Header, body, rc.clock.Now(), 0); err != nil {
		rc.mu.Lock()
		rc.rejected = append(rc.rejected, err)
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p notify.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get(webhook.HeaderEvent) != p.Kind || r.Header.Get(webhook.HeaderDelivery) != p.ID || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "headers disagree with the body", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.verified = append(rc.verified, p)
	rc.headers = append(rc.headers, r.Header.Clone())
	status := http.StatusOK
	if len(rc.answers) > 0 {
		status, rc.answers = rc.answers[0], rc.answers[1:]
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "7")
	}
	w.WriteHeader(status)
}

func TestWebhookDeliveries(t *testing.T) {
	ev := keyrot.Event{Kind: keyrot.EventKeyCreated, User: "alice", KeyID: "AKIAEXAMPLE000000001", Time: t0,
		Summary: "new access key AKIAEXAMPLE000000001 is current for alice", Next: "previous key will be deactivated", NextAt: t0.Add(time.Hour)}
	for _, tc := range []struct {
		name     string
		answers  []int
		results  []notify.Result
		verified int
		waits    []time.Duration
	}{
		{name: "200 is delivered", results: []notify.Result{notify.ResultOK}, verified: 1},
		{name: "500 is retried", answers: []int{500, 503}, verified: 3, waits: []time.Duration{time.Second, 2 * time.Second},
			results: []notify.Result{notify.ResultRetried, notify.ResultRetried, notify.ResultOK}},
		{name: "429 is retried after Retry-After", answers: []int{429}, verified: 2, waits: []time.Duration{7 * time.Second},
			results: []notify.Result{notify.ResultRetried, notify.ResultOK}},
		{name: "401 is final", answers: []int{401}, verified: 1, results: []notify.Result{notify.ResultFailed}},
		{name: "422 is final", answers: []int{422}, verified: 1, results: []notify.Result{notify.ResultFailed}},
		{name: "a redirect is not followed", answers: []int{302}, verified: 1, results: []notify.Result{notify.ResultFailed}},
		{name: "500 for ever spends the retries", answers: []int{500, 500, 500, 500}, verified: 3, waits: []time.Duration{time.Second, 2 * time.Second},
			results: []notify.Result{notify.ResultRetried, notify.ResultRetried, notify.ResultFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := mock.NewClock(t0)
			clock.SetAutoAdvance(true)
			rc := &receiver{t: t, clock: clock, answers: tc.answers}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			d, err := webhook.New(srv.URL+"/hook", secret, nil, clock)
			if err != nil {
				t.Fatal(err)
			}
			res := &mock.DeliveryResults{}
			q, err := notify.NewQueue(notify.Config{Target: "webhook:test", Retries: 2, Backoff: time.Second}, d,
				notify.WithClock(clock), notify.WithResultHook(res.Hook))
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := q.Notify(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if err := q.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(rc.rejected) > 0 {
				t.Fatalf("receiver rejected deliveries: %v", rc.rejected)
			}
			if len(rc.verified) != tc.verified {
				t.Fatalf("receiver verified %d deliveries, want %d", len(rc.verified), tc.verified)
			}
			for i, p := range rc.verified {
				if p.ID != rc.verified[0].ID || p.Kind != "key_created" || p.User != "alice" || p.KeyID != ev.KeyID || p.NextAt != "2026-03-01T10:00:00Z" {
					t.Errorf("delivery %d: %+v", i, p)
				}
				if ts, _ := strconv.ParseInt(rc.headers[i].Get(webhook.HeaderTimestamp), 10, 64); ts < t0.Unix() {
					t.Errorf("delivery %d: timestamp %d before the clock's start", i, ts)
				}
			}
			if !slices.Equal(res.List(), tc.results) {
				t.Errorf("results = %v, want %v", res.List(), tc.results)
			}
			if !slices.Equal(clock.Waits(), tc.waits) {
				t.Errorf("waits = %v, want %v", clock.Waits(), tc.waits)
			}
		})
	}
}

func TestWebhookTimeoutIsRetried(t *testing.T) {
	clock := mock.NewClock(t0)
	clock.SetAutoAdvance(true)
	release := make(chan struct{})
	rc := &receiver{t: t, clock: clock, hang: release}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	defer close(release)
	d, err := webhook.New(srv.URL, secret, nil, clock)
	if err != nil {
		t.Fatal(err)
	}
	res := &mock.DeliveryResults{}
	// The first attempt hangs until its (real-time) timeout; the retry is answered.
	q, err := notify.NewQueue(notify.Config{Target: "webhook:test", AttemptTimeout: 50 * time.Millisecond}, d,
		notify.WithClock(clock), notify.WithResultHook(res.Hook))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = q.Notify(context.Background(), keyrot.Event{Kind: keyrot.EventKeyDeleted, User: "bob", Time: t0, Summary: "deleted"})
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := []notify.Result{notify.ResultRetried, notify.ResultOK}; !slices.Equal(res.List(), want) {
		t.Errorf("results = %v, want %v", res.List(), want)
	}
	if len(rc.verified) != 1 {
		t.Errorf("receiver verified %d deliveries, want the retry", len(rc.verified))
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"kind":"key_created"}`)
	ts := strconv.FormatInt(t0.Unix(), 10)
	header := func(ts, sig string) http.Header {
		h := http.Header{}
		h.Set(webhook.HeaderTimestamp, ts)
		h.Set(webhook.HeaderSignature, sig)
		return h
	}
	good := webhook.Sign(secret, ts, body)
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		now  time.Time
		want error
	}{
		{"valid", header(ts, good), body, t0.Add(time.Minute), nil},
		{"valid from a clock a little behind", header(ts, good), body, t0.Add(-time.Minute), nil},
		{"tampered body", header(ts, good), []byte(`{"kind":"key_deleted"}`), t0, webhook.ErrBadSignature},
		{"other secret", header(ts, webhook.Sign([]byte("other"), ts, body)), body, t0, webhook.ErrBadSignature},
		{"timestamp moved to replay", header(strconv.FormatInt(t0.Unix()+600, 10), good), body, t0.Add(10 * time.Minute), webhook.ErrBadSignature},
		{"replayed too late", header(ts, good), body, t0.Add(6 * time.Minute), webhook.ErrStale},
		{"no signature", header(ts, ""), body, t0, webhook.ErrMissingHeader},
		{"not sha256=", header(ts, "sha1=abc"), body, t0, webhook.ErrBadSignature},
		{"not hex", header(ts, "sha256=zz"), body, t0, webhook.ErrBadSignature},
		{"timestamp not a number", header("soon", good), body, t0, webhook.ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := webhook.Verify(secret, tc.h, tc.body, tc.now, 0); !errors.Is(err, tc.want) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	// The documented scheme, computed independently (Python: hmac.new(b"s",
	// b"1700000000.{}", hashlib.sha256).hexdigest()).
	if got, want := webhook.Sign([]byte("s"), "1700000000", []byte("{}")), "sha256=e9232c9945da8456c2dea6b39da7786c07b00bca7a64d5dd1283674713a7b72a"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}
