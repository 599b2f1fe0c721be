package email_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
)

// waitLimit bounds how long a test waits for the delivery goroutine before
// failing; no test sleeps.
const waitLimit = 10 * time.Second

// fakeClock is a keyrot.Clock driven by the test.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	changed chan struct{}
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

var _ keyrot.Clock = (*fakeClock)(nil)

func newFakeClock(t0 time.Time) *fakeClock {
	return &fakeClock{now: t0, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Advance moves the clock on and fires the waiters that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// AwaitWaiter blocks until someone waits for exactly the time at.
func (c *fakeClock) AwaitWaiter(t *testing.T, at time.Time) {
	t.Helper()
	limit := time.After(waitLimit)
	for {
		c.mu.Lock()
		found := false
		for _, w := range c.waiters {
			found = found || w.at.Equal(at)
		}
		ch := c.changed
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-ch:
		case <-limit:
			t.Fatalf("nobody waited for %s", at.Format(time.RFC3339))
		}
	}
}

// recordingSender records each message, with the clock's time, and returns
// the queued errors in turn.
type recordingSender struct {
	clock keyrot.Clock
	mu    sync.Mutex
	errs  []error
	// always is returned once errs is used up.
	always error
	sent   chan sentMessage
	// block, if set, makes Send wait for a value (entered is told first).
	block   chan struct{}
	entered chan struct{}
}

type sentMessage struct {
	msg email.Message
	at  time.Time
	err error
}

func newRecordingSender(clock keyrot.Clock, errs ...error) *recordingSender {
	return &recordingSender{clock: clock, errs: errs, sent: make(chan sentMessage, 100), entered: make(chan struct{}, 100)}
}

func (s *recordingSender) Send(ctx context.Context, m email.Message) error {
	if s.block != nil {
		s.entered <- struct{}{}
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	err := s.always
	if len(s.errs) > 0 {
		err, s.errs = s.errs[0], s.errs[1:]
	}
	s.mu.Unlock()
	s.sent <- sentMessage{msg: m, at: s.clock.Now(), err: err}
	return err
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		var zero T
		t.Fatalf("timed out waiting for %T", zero)
		return zero
	}
}

func expectNone[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %+v", v)
	default:
	}
}

// result is one call of the notifier's result hook.
type result struct {
	kind keyrot.EventKind
	err  error
}

func resultHook(ch chan result) email.Option {
	return email.WithResultHook(func(kind keyrot.EventKind, err error) { ch <- result{kind, err} })
}

// fakeSecret returns a random string shaped like an AWS secret access key.
func fakeSecret(t *testing.T) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, 40)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	// Guarantee the mix of cases and digits every real key has.
	b[0], b[1], b[2] = 'a', 'Z', '7'
	return string(b)
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func testConfig() email.Config {
	return email.Config{
		From:       "keyrot@example.com",
		Admin:      "platform-admins@example.com",
		APIBaseURL: "https://keyrot.example.com",
		Region:     "eu-west-1",
		Contact:    "security@example.com",
	}
}

// sampleEvents is one event of each kind and warning, with fixed times.
func sampleEvents() map[string]keyrot.Event {
	base := keyrot.Event{User: "ci-bot", KeyID: "AKIAIOSFODNN7EXAMPLE", Owner: "team-ci@example.com", Time: t0}
	with := func(f func(*keyrot.Event)) keyrot.Event {
		e := base
		f(&e)
		return e
	}
	return map[string]keyrot.Event{
		"member_key_created": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventKeyCreated
			e.Account = "100000000001"
			e.Summary = "Created and stored a new access key; it is now current."
		}),
		"account_failed": {Kind: keyrot.EventRotationFailed, Account: "100000000002", Time: t0,
			Summary: "Could not assume role keyrot-member in account 100000000002.",
			Err:     "sts: assume role arn:aws:iam::100000000002:role/keyrot-member: AccessDenied"},
		"key_created": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventKeyCreated
			e.Summary = "Created and stored a new access key; it is now current."
			e.Next = "The previous key AKIAI44QH8DHBEXAMPLE is deactivated."
			e.NextAt = t0.Add(2 * time.Minute)
		}),
		"key_deactivated": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventKeyDeactivated
			e.KeyID = "AKIAI44QH8DHBEXAMPLE"
			e.Summary = "Deactivated the previous access key."
			e.Next = "The key is deleted."
			e.NextAt = t0.Add(time.Minute)
			e.LastUsed = t0.Add(-90 * time.Second)
		}),
		"key_deleted": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventKeyDeleted
			e.KeyID = "AKIAI44QH8DHBEXAMPLE"
			e.Summary = "Deleted the previous access key."
		}),
		"rotation_failed": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventRotationFailed
			e.KeyID = ""
			e.Summary = "Could not create a new access key."
			e.Err = `iam: create access key for user "ci-bot": user already has two access keys`
			e.Next = "keyrot tries again on its next pass."
			e.NextAt = t0.Add(time.Minute)
		}),
		"rotation_recovered": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventRotationRecovered
			e.KeyID = ""
			e.Summary = "Rotation of ci-bot works again (failing since 2025-03-01T09:00:00Z)."
		}),
		"warning_key_in_use": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventWarning
			e.Warning = keyrot.WarnKeyInUse
			e.KeyID = "AKIAI44QH8DHBEXAMPLE"
			e.Summary = "The previous key was still in use when it was deactivated."
			e.Next = "The key is deleted."
			e.NextAt = t0.Add(time.Minute)
			e.LastUsed = t0.Add(-10 * time.Second)
		}),
		"warning_unmanaged_key": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventWarning
			e.Warning = keyrot.WarnUnmanagedKey
			e.KeyID = "AKIAJ5EXAMPLEUNMANAGED"
			e.Summary = "The user has an access key keyrot did not create; it is left alone."
		}),
		"warning_key_limit": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventWarning
			e.Warning = keyrot.WarnKeyLimit
			e.Summary = "The user has two access keys; keyrot cannot rotate it."
		}),
		"warning_api_key_expiring": apiKeyWarning("ci"),
	}
}

// apiKeyWarning is the warning the API gives about an expiring API key.
func apiKeyWarning(name string) keyrot.Event {
	return keyrot.Event{
		Kind: keyrot.EventWarning, Warning: keyrot.WarnAPIKeyExpiring, APIKey: name, Time: t0,
		Summary: `API key "` + name + `" expires at 2025-03-24T09:26:53Z.`,
		Next:    `The API key stops working: requests with it get 401 "API key expired".`,
		NextAt:  t0.Add(10 * 24 * time.Hour),
	}
}
