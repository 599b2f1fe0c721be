package email_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/mock"
)

func startNotifier(t *testing.T, cfg email.Config, s email.Sender, opts ...email.Option) *email.Notifier {
	t.Helper()
	opts = append([]email.Option{email.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	n, err := email.NewNotifier(cfg, s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // give up at once: the test has checked what it needs
		_ = n.Close(ctx)
	})
	return n
}

func TestNotifierDelivers(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	results := make(chan result, 10)
	n := startNotifier(t, testConfig(), sender, email.WithClock(clock), resultHook(results))
	e := sampleEvents()["key_created"]
	if err := n.Notify(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	got := recv(t, sender.sent)
	if got, want := strings.Join(got.msg.To, ","), "platform-admins@example.com,team-ci@example.com"; got != want {
		t.Errorf("To = %q, want %q", got, want)
	}
	if got, want := got.msg.Subject, "[keyrot] key created: ci-bot AKIAIOSFODNN7EXAMPLE"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if r := recv(t, results); r.kind != keyrot.EventKeyCreated || r.err != nil {
		t.Errorf("hook got %v %v, want key_created nil", r.kind, r.err)
	}
}

// TestNotifierRetriesThenDelivers: two failures, then success, with the
// backoff doubling on the driven clock.
func TestNotifierRetriesThenDelivers(t *testing.T) {
	clock := mock.NewClock(t0)
	boom := errors.New("throttled")
	sender := newRecordingSender(clock, boom, boom)
	results := make(chan result, 10)
	cfg := testConfig()
	cfg.Backoff = time.Second
	n := startNotifier(t, cfg, sender, email.WithClock(clock), resultHook(results))
	if err := n.Notify(t.Context(), sampleEvents()["key_deleted"]); err != nil {
		t.Fatal(err)
	}
	want := []time.Time{t0, t0.Add(time.Second), t0.Add(3 * time.Second)}
	for i, at := range want {
		if i > 0 {
			awaitTimer(t, clock, at)
			expectNone(t, results)
			clock.Advance(at.Sub(clock.Now()))
		}
		got := recv(t, sender.sent)
		if !got.at.Equal(at) {
			t.Errorf("attempt %d at %s, want %s", i+1, got.at, at)
		}
	}
	if r := recv(t, results); r.err != nil {
		t.Errorf("hook err = %v, want nil", r.err)
	}
}

// TestNotifierFailureReportedWithoutBlocking: every send fails; Notify
// keeps returning at once, and after the last retry the failure reaches
// the hook.
func TestNotifierFailureReportedWithoutBlocking(t *testing.T) {
	clock := mock.NewClock(t0)
	boom := errors.New("connection refused")
	sender := newRecordingSender(clock)
	sender.always = boom
	results := make(chan result, 10)
	cfg := testConfig()
	cfg.SendRate = 1e12 // no rate limit in the way
	cfg.Retries = 2
	cfg.Backoff = time.Second
	n := startNotifier(t, cfg, sender, email.WithClock(clock), resultHook(results))
	e := sampleEvents()["rotation_failed"]
	if err := n.Notify(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	recv(t, sender.sent)
	// Rotations go on while delivery is failing: Notify does not wait.
	for range 5 {
		if err := n.Notify(t.Context(), sampleEvents()["key_deleted"]); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		recv(t, sender.sent)
	}
	for _, at := range []time.Time{t0.Add(time.Second), t0.Add(3 * time.Second)} {
		awaitTimer(t, clock, at)
		clock.Advance(at.Sub(clock.Now()))
		for {
			m := recv(t, sender.sent)
			if m.msg.Headers[email.HeaderEvent] == string(keyrot.EventRotationFailed) {
				break
			}
		}
	}
	for {
		r := recv(t, results)
		if r.kind != keyrot.EventRotationFailed {
			continue
		}
		if !errors.Is(r.err, boom) {
			t.Errorf("hook err = %v, want %v", r.err, boom)
		}
		break
	}
}

func TestNotifierPermanentErrorNotRetried(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock, email.Permanent(errors.New("MessageRejected")))
	results := make(chan result, 10)
	n := startNotifier(t, testConfig(), sender, email.WithClock(clock), resultHook(results))
	if err := n.Notify(t.Context(), sampleEvents()["key_deleted"]); err != nil {
		t.Fatal(err)
	}
	recv(t, sender.sent)
	if r := recv(t, results); !email.IsPermanent(r.err) {
		t.Errorf("hook err = %v, want permanent", r.err)
	}
	expectNone(t, sender.sent)
}

func TestNotifierQueueFullDoesNotBlock(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	sender.block = make(chan struct{})
	results := make(chan result, 10)
	cfg := testConfig()
	cfg.QueueSize = 1
	n := startNotifier(t, cfg, sender, email.WithClock(clock), resultHook(results))
	ev := sampleEvents()["key_created"]
	if err := n.Notify(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	recv(t, sender.entered) // the worker is stuck in Send
	if err := n.Notify(t.Context(), ev); err != nil {
		t.Fatalf("second Notify (fits the queue) = %v", err)
	}
	if err := n.Notify(t.Context(), ev); !errors.Is(err, email.ErrQueueFull) {
		t.Fatalf("third Notify = %v, want ErrQueueFull", err)
	}
	if r := recv(t, results); !errors.Is(r.err, email.ErrQueueFull) || r.kind != keyrot.EventKeyCreated {
		t.Errorf("hook = %v %v, want key_created ErrQueueFull", r.kind, r.err)
	}
	close(sender.block)
	recv(t, sender.sent)
}

// TestNotifierSendsEveryWarning: the notifier decides nothing about
// repeats: the same warning given twice, at once, is sent twice (the
// rotator's record on the secret, keyrot.WarnRecord, decides before).
func TestNotifierSendsEveryWarning(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	cfg := testConfig()
	cfg.SendRate = 1e12 // no rate limit in the way
	p := &dedupProbe{t: t, clock: clock, sender: sender, n: startNotifier(t, cfg, sender, email.WithClock(clock))}
	warn := sampleEvents()["warning_key_in_use"]
	for i := range 3 {
		p.notify(warn)
		p.sent(true, fmt.Sprintf("warning %d, unchanged", i+1))
	}
	ci := apiKeyWarning("ci")
	p.notify(ci)
	p.sent(true, "an API key warning")
	p.notify(ci)
	p.sent(true, "the same API key warning again")
}

// dedupProbe notifies events and tells whether a warning among them was sent.
type dedupProbe struct {
	t      *testing.T
	n      *email.Notifier
	sender *recordingSender
	clock  *mock.Clock
}

func (p *dedupProbe) notify(e keyrot.Event) {
	p.t.Helper()
	if err := p.n.Notify(p.t.Context(), e); err != nil {
		p.t.Fatal(err)
	}
}

// sent checks whether the warnings notified since the last call were sent.
func (p *dedupProbe) sent(want bool, why string) {
	p.t.Helper()
	// A marker event after the warning proves the warning was handled:
	// the queue is FIFO.
	p.notify(keyrot.Event{Kind: keyrot.EventKeyDeleted, User: "marker", Time: p.clock.Now()})
	m := recv(p.t, p.sender.sent)
	got := m.msg.Headers[email.HeaderEvent] == string(keyrot.EventWarning)
	if got != want {
		p.t.Fatalf("%s: warning sent = %v, want %v", why, got, want)
	}
	if got {
		recv(p.t, p.sender.sent) // the marker
	}
}

func TestNotifierDigest(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	cfg := testConfig()
	cfg.Digest = 10 * time.Minute
	n, err := email.NewNotifier(cfg, sender, email.WithClock(clock), email.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ev := sampleEvents()
	a := ev["key_created"]
	a.User, a.Owner = "u1", "o1@example.com"
	b := ev["key_deleted"]
	b.User, b.Owner = "u2", "o1@example.com"
	c := ev["warning_key_in_use"]
	c.User, c.Owner = "u3", "o2@example.com"
	for _, e := range []keyrot.Event{a, b, c} {
		if err := n.Notify(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	// Queued before Start, the three events are taken in one batch.
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = n.Close(ctx)
	})
	flush := t0.Add(10 * time.Minute)
	awaitTimer(t, clock, flush)
	expectNone(t, sender.sent)
	clock.Advance(10 * time.Minute)

	want := []struct{ to, subject string }{
		{"platform-admins@example.com", "[keyrot] digest: 3 events for 3 users (1 WARNING)"},
		{"o1@example.com", "[keyrot] digest: 2 events for 2 users"},
		{"o2@example.com", "[keyrot] WARNING key in use: u3 AKIAI44QH8DHBEXAMPLE"},
	}
	for i, w := range want {
		if i > 0 {
			at := flush.Add(time.Duration(i) * time.Second)
			awaitTimer(t, clock, at)
			clock.Advance(time.Second)
		}
		m := recv(t, sender.sent)
		if got := strings.Join(m.msg.To, ","); got != w.to {
			t.Errorf("message %d to %q, want %q", i, got, w.to)
		}
		if got := m.msg.Subject; got != w.subject {
			t.Errorf("message %d subject %q, want %q", i, got, w.subject)
		}
	}
	expectNone(t, sender.sent)
}

func TestNotifierSendRate(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	cfg := testConfig()
	cfg.SendRate = 0.5 // one message every 2s
	n := startNotifier(t, cfg, sender, email.WithClock(clock))
	for _, e := range []keyrot.Event{sampleEvents()["key_created"], sampleEvents()["key_deactivated"], sampleEvents()["key_deleted"]} {
		if err := n.Notify(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		at := t0.Add(time.Duration(2*i) * time.Second)
		if i > 0 {
			awaitTimer(t, clock, at)
			expectNone(t, sender.sent)
			clock.Advance(2 * time.Second)
		}
		if got := recv(t, sender.sent); !got.at.Equal(at) {
			t.Errorf("message %d sent at %s, want %s", i, got.at, at)
		}
	}
}

func TestNotifierCloseDrains(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	n, err := email.NewNotifier(testConfig(), sender, email.WithLogger(slog.New(slog.DiscardHandler)), email.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, e := range []keyrot.Event{sampleEvents()["key_created"], sampleEvents()["key_deleted"]} {
		if err := n.Notify(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close(t.Context()) }()
	recv(t, sender.sent)
	awaitTimer(t, clock, t0.Add(time.Second))
	clock.Advance(time.Second)
	recv(t, sender.sent)
	if err := recv(t, closed); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := n.Notify(t.Context(), sampleEvents()["key_created"]); !errors.Is(err, email.ErrClosed) {
		t.Errorf("Notify after Close = %v, want ErrClosed", err)
	}
}

func TestNotifierCloseGivesUp(t *testing.T) {
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock, errors.New("down"))
	results := make(chan result, 10)
	n, err := email.NewNotifier(testConfig(), sender, email.WithLogger(slog.New(slog.DiscardHandler)), email.WithClock(clock), resultHook(results))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(t.Context(), sampleEvents()["key_created"]); err != nil {
		t.Fatal(err)
	}
	recv(t, sender.sent)
	awaitTimer(t, clock, t0.Add(email.DefaultBackoff))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := n.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v, want context.Canceled", err)
	}
	if r := recv(t, results); !errors.Is(r.err, email.ErrClosed) {
		t.Errorf("hook err = %v, want ErrClosed", r.err)
	}
}

func TestFlushDeliversQueuedAndDigested(t *testing.T) {
	var mu sync.Mutex
	var sent []email.Message
	s := email.SenderFunc(func(_ context.Context, m email.Message) error {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, m)
		return nil
	})
	cfg := email.Config{From: "keyrot@example.com", Admin: "sec@example.com", SendRate: 1000, Digest: time.Hour}
	n, err := email.NewNotifier(cfg, s, email.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	for i := range 3 {
		if err := n.Notify(ctx, keyrot.Event{Kind: keyrot.EventKeyCreated, User: "ci-bot", KeyID: "AKIAAAAAAAAAAAAAAAA" + string(rune('1'+i)), Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 || !strings.Contains(sent[0].Text, "AKIAAAAAAAAAAAAAAAA3") {
		t.Fatalf("after Flush, sent %d messages, want the one digest of 3 events", len(sent))
	}
}

// A queued message is rendered when its turn to be sent comes: one that
// fails to render then (a template override that fails on some users) is
// reported as a permanent failure for its event, and the queue goes on.
func TestNotifierRenderFailureAtSendTime(t *testing.T) {
	dir := t.TempDir()
	// Parses (so the config is valid), fails to execute for one user.
	tmpl := `{{if eq .User "broken"}}{{index .Fetch 0}}{{end}}{{.Title}} for {{.User}}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, email.TemplateEventText), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.TemplateDir = dir
	cfg.SendRate = 1e12 // no rate limit in the way
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	results := make(chan result, 10)
	n := startNotifier(t, cfg, sender, email.WithClock(clock), resultHook(results))
	broken := sampleEvents()["key_created"]
	broken.User = "broken"
	for _, e := range []keyrot.Event{broken, sampleEvents()["key_created"]} {
		if err := n.Notify(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if r := recv(t, results); r.kind != keyrot.EventKeyCreated || !email.IsPermanent(r.err) {
		t.Fatalf("first result: %v %v, want key_created with a permanent error", r.kind, r.err)
	}
	if r := recv(t, results); r.kind != keyrot.EventKeyCreated || r.err != nil {
		t.Fatalf("second result: %v %v, want key_created delivered", r.kind, r.err)
	}
	if got := recv(t, sender.sent); !strings.HasPrefix(got.msg.Text, "key created for ci-bot") {
		t.Errorf("sent text %q, want the second event's", got.msg.Text)
	}
}
