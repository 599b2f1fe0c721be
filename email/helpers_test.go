package email_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/mock"
)

// waitLimit bounds how long a test waits for the delivery goroutine before
// failing; no test sleeps.
const waitLimit = 10 * time.Second

// awaitTimer blocks until the code under test waits on clock for exactly
// the time at.
func awaitTimer(t *testing.T, clock *mock.Clock, at time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := clock.AwaitTimer(ctx, at); err != nil {
		t.Fatal(err)
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
		"sync_failed": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventSyncFailed
			e.KeyID = "AKIAI44QH8DHBEXAMPLE"
			e.Target = "github/acme/app"
			e.Summary = "Delivering key AKIAI44QH8DHBEXAMPLE of ci-bot to github/acme/app has failed 3 times since 2025-03-01T09:00:00Z."
			e.Err = `github: set secret AWS_SECRET_ACCESS_KEY for key AKIAI44QH8DHBEXAMPLE of "ci-bot": PUT api.github.com/repos/acme/app/actions/secrets/AWS_SECRET_ACCESS_KEY: 401 Unauthorized: Bad credentials`
			e.Next = "keyrot retries on every pass, keeps the previous key active meanwhile (up to sync.max_hold), and says when delivery works again"
		}),
		"sync_recovered": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventSyncRecovered
			e.KeyID = "AKIAI44QH8DHBEXAMPLE"
			e.Target = "github/acme/app"
			e.Summary = "github/acme/app confirmed key AKIAI44QH8DHBEXAMPLE of ci-bot: delivery works again (failing since 2025-03-01T09:00:00Z)."
		}),
		"warning_sync_hold_expired": with(func(e *keyrot.Event) {
			e.Kind = keyrot.EventWarning
			e.Warning = keyrot.WarnSyncHoldExpired
			e.KeyID = "AKIAJ5PREVIOUSEXAMPLE"
			e.Summary = "Key AKIAJ5PREVIOUSEXAMPLE stays active past 2025-03-01T12:00:00Z (sync.max_hold, sync.on_failure: hold) because github/acme/app did not confirm the current key; rotation waits until it does."
		}),
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
