// Package mock provides function-field mocks of keyrot's interfaces and a
// driven clock, for tests.
//
// Each mock method calls the function field of the same name with an Fn
// suffix, and panics with a message naming the field if it is not set, so a
// test states exactly which calls it expects. Notifier and Publisher also
// record what they receive, and treat a nil Fn as "accept".
package mock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keyrot/keyrot"
)

func unset(method string) string {
	return fmt.Sprintf("mock: %s called but %sFn is not set", method, method)
}

// KeyManager is a mock keyrot.KeyManager.
type KeyManager struct {
	ListUsersFn       func(ctx context.Context, pathPrefix string) ([]keyrot.User, error)
	GetUserFn         func(ctx context.Context, name string) (keyrot.User, error)
	GroupMembersFn    func(ctx context.Context, group string) ([]string, error)
	ListAccessKeysFn  func(ctx context.Context, user string) ([]keyrot.AccessKey, error)
	CreateAccessKeyFn func(ctx context.Context, user string) (keyrot.Credentials, error)
	SetKeyStatusFn    func(ctx context.Context, user, keyID string, status keyrot.KeyStatus) error
	DeleteAccessKeyFn func(ctx context.Context, user, keyID string) error
	KeyLastUsedFn     func(ctx context.Context, keyID string) (time.Time, error)
}

var _ keyrot.KeyManager = (*KeyManager)(nil)

// ListUsers calls ListUsersFn.
func (m *KeyManager) ListUsers(ctx context.Context, pathPrefix string) ([]keyrot.User, error) {
	if m.ListUsersFn == nil {
		panic(unset("KeyManager.ListUsers"))
	}
	return m.ListUsersFn(ctx, pathPrefix)
}

// GetUser calls GetUserFn.
func (m *KeyManager) GetUser(ctx context.Context, name string) (keyrot.User, error) {
	if m.GetUserFn == nil {
		panic(unset("KeyManager.GetUser"))
	}
	return m.GetUserFn(ctx, name)
}

// GroupMembers calls GroupMembersFn.
func (m *KeyManager) GroupMembers(ctx context.Context, group string) ([]string, error) {
	if m.GroupMembersFn == nil {
		panic(unset("KeyManager.GroupMembers"))
	}
	return m.GroupMembersFn(ctx, group)
}

// ListAccessKeys calls ListAccessKeysFn.
func (m *KeyManager) ListAccessKeys(ctx context.Context, user string) ([]keyrot.AccessKey, error) {
	if m.ListAccessKeysFn == nil {
		panic(unset("KeyManager.ListAccessKeys"))
	}
	return m.ListAccessKeysFn(ctx, user)
}

// CreateAccessKey calls CreateAccessKeyFn.
func (m *KeyManager) CreateAccessKey(ctx context.Context, user string) (keyrot.Credentials, error) {
	if m.CreateAccessKeyFn == nil {
		panic(unset("KeyManager.CreateAccessKey"))
	}
	return m.CreateAccessKeyFn(ctx, user)
}

// SetKeyStatus calls SetKeyStatusFn.
func (m *KeyManager) SetKeyStatus(ctx context.Context, user, keyID string, status keyrot.KeyStatus) error {
	if m.SetKeyStatusFn == nil {
		panic(unset("KeyManager.SetKeyStatus"))
	}
	return m.SetKeyStatusFn(ctx, user, keyID, status)
}

// DeleteAccessKey calls DeleteAccessKeyFn.
func (m *KeyManager) DeleteAccessKey(ctx context.Context, user, keyID string) error {
	if m.DeleteAccessKeyFn == nil {
		panic(unset("KeyManager.DeleteAccessKey"))
	}
	return m.DeleteAccessKeyFn(ctx, user, keyID)
}

// KeyLastUsed calls KeyLastUsedFn.
func (m *KeyManager) KeyLastUsed(ctx context.Context, keyID string) (time.Time, error) {
	if m.KeyLastUsedFn == nil {
		panic(unset("KeyManager.KeyLastUsed"))
	}
	return m.KeyLastUsedFn(ctx, keyID)
}

// KeyVerifier is a mock keyrot.KeyVerifier.
type KeyVerifier struct {
	VerifyKeyFn func(ctx context.Context, creds keyrot.Credentials) error
}

var _ keyrot.KeyVerifier = (*KeyVerifier)(nil)

// VerifyKey calls VerifyKeyFn.
func (m *KeyVerifier) VerifyKey(ctx context.Context, creds keyrot.Credentials) error {
	if m.VerifyKeyFn == nil {
		panic(unset("KeyVerifier.VerifyKey"))
	}
	return m.VerifyKeyFn(ctx, creds)
}

// SecretStore is a mock keyrot.SecretStore.
type SecretStore struct {
	LoadFn             func(ctx context.Context, user string) (keyrot.SecretState, error)
	InitFn             func(ctx context.Context, user keyrot.User) error
	BeginCreateFn      func(ctx context.Context, user keyrot.User, intent keyrot.Intent) error
	StorePendingFn     func(ctx context.Context, intent keyrot.Intent, creds keyrot.Credentials) (keyrot.StoredKey, error)
	PromoteFn          func(ctx context.Context, user string, pending keyrot.StoredKey, previousKeyID string, since time.Time, timings keyrot.Timings) error
	SetTimingsFn       func(ctx context.Context, user string, timings keyrot.Timings) error
	ClearIntentFn      func(ctx context.Context, user string) error
	MarkInactiveFn     func(ctx context.Context, user, keyID string, at time.Time) error
	MarkDeactivatingFn func(ctx context.Context, user, keyID string, at time.Time) error
	MarkSeenFn         func(ctx context.Context, user, keyID string, at time.Time) error
	ReportedFn         func(ctx context.Context, user, keyID string) error
	MarkFailingFn      func(ctx context.Context, user string, since time.Time) error
	MarkWarnedFn       func(ctx context.Context, user string, kind keyrot.WarningKind, keyID string, at time.Time) error
	ClearWarnedFn      func(ctx context.Context, user string, kind keyrot.WarningKind) error
	ForgetFn           func(ctx context.Context, user, keyID string) error
	MarkDeliveryFn     func(ctx context.Context, user, target string, d keyrot.Delivery) error
	CurrentFn          func(ctx context.Context, user string) (keyrot.Credentials, error)
}

var _ keyrot.SecretStore = (*SecretStore)(nil)

// Load calls LoadFn.
func (m *SecretStore) Load(ctx context.Context, user string) (keyrot.SecretState, error) {
	if m.LoadFn == nil {
		panic(unset("SecretStore.Load"))
	}
	return m.LoadFn(ctx, user)
}

// Init calls InitFn.
func (m *SecretStore) Init(ctx context.Context, user keyrot.User) error {
	if m.InitFn == nil {
		panic(unset("SecretStore.Init"))
	}
	return m.InitFn(ctx, user)
}

// MarkDeactivating calls MarkDeactivatingFn.
func (m *SecretStore) MarkDeactivating(ctx context.Context, user, keyID string, at time.Time) error {
	if m.MarkDeactivatingFn == nil {
		panic(unset("SecretStore.MarkDeactivating"))
	}
	return m.MarkDeactivatingFn(ctx, user, keyID, at)
}

// MarkSeen calls MarkSeenFn.
func (m *SecretStore) MarkSeen(ctx context.Context, user, keyID string, at time.Time) error {
	if m.MarkSeenFn == nil {
		panic(unset("SecretStore.MarkSeen"))
	}
	return m.MarkSeenFn(ctx, user, keyID, at)
}

// Reported calls ReportedFn.
func (m *SecretStore) Reported(ctx context.Context, user, keyID string) error {
	if m.ReportedFn == nil {
		panic(unset("SecretStore.Reported"))
	}
	return m.ReportedFn(ctx, user, keyID)
}

// MarkFailing calls MarkFailingFn.
func (m *SecretStore) MarkFailing(ctx context.Context, user string, since time.Time) error {
	if m.MarkFailingFn == nil {
		panic(unset("SecretStore.MarkFailing"))
	}
	return m.MarkFailingFn(ctx, user, since)
}

// MarkDelivery calls MarkDeliveryFn.
func (m *SecretStore) MarkDelivery(ctx context.Context, user, target string, d keyrot.Delivery) error {
	if m.MarkDeliveryFn == nil {
		panic(unset("SecretStore.MarkDelivery"))
	}
	return m.MarkDeliveryFn(ctx, user, target, d)
}

// BeginCreate calls BeginCreateFn.
func (m *SecretStore) BeginCreate(ctx context.Context, user keyrot.User, intent keyrot.Intent) error {
	if m.BeginCreateFn == nil {
		panic(unset("SecretStore.BeginCreate"))
	}
	return m.BeginCreateFn(ctx, user, intent)
}

// StorePending calls StorePendingFn.
func (m *SecretStore) StorePending(ctx context.Context, intent keyrot.Intent, creds keyrot.Credentials) (keyrot.StoredKey, error) {
	if m.StorePendingFn == nil {
		panic(unset("SecretStore.StorePending"))
	}
	return m.StorePendingFn(ctx, intent, creds)
}

// Promote calls PromoteFn.
func (m *SecretStore) Promote(ctx context.Context, user string, pending keyrot.StoredKey, previousKeyID string, since time.Time, timings keyrot.Timings) error {
	if m.PromoteFn == nil {
		panic(unset("SecretStore.Promote"))
	}
	return m.PromoteFn(ctx, user, pending, previousKeyID, since, timings)
}

// SetTimings calls SetTimingsFn.
func (m *SecretStore) SetTimings(ctx context.Context, user string, timings keyrot.Timings) error {
	if m.SetTimingsFn == nil {
		panic(unset("SecretStore.SetTimings"))
	}
	return m.SetTimingsFn(ctx, user, timings)
}

// ClearIntent calls ClearIntentFn.
func (m *SecretStore) ClearIntent(ctx context.Context, user string) error {
	if m.ClearIntentFn == nil {
		panic(unset("SecretStore.ClearIntent"))
	}
	return m.ClearIntentFn(ctx, user)
}

// MarkWarned calls MarkWarnedFn.
func (m *SecretStore) MarkWarned(ctx context.Context, user string, kind keyrot.WarningKind, keyID string, at time.Time) error {
	if m.MarkWarnedFn == nil {
		panic(unset("SecretStore.MarkWarned"))
	}
	return m.MarkWarnedFn(ctx, user, kind, keyID, at)
}

// ClearWarned calls ClearWarnedFn.
func (m *SecretStore) ClearWarned(ctx context.Context, user string, kind keyrot.WarningKind) error {
	if m.ClearWarnedFn == nil {
		panic(unset("SecretStore.ClearWarned"))
	}
	return m.ClearWarnedFn(ctx, user, kind)
}

// MarkInactive calls MarkInactiveFn.
func (m *SecretStore) MarkInactive(ctx context.Context, user, keyID string, at time.Time) error {
	if m.MarkInactiveFn == nil {
		panic(unset("SecretStore.MarkInactive"))
	}
	return m.MarkInactiveFn(ctx, user, keyID, at)
}

// Forget calls ForgetFn.
func (m *SecretStore) Forget(ctx context.Context, user, keyID string) error {
	if m.ForgetFn == nil {
		panic(unset("SecretStore.Forget"))
	}
	return m.ForgetFn(ctx, user, keyID)
}

// Current calls CurrentFn.
func (m *SecretStore) Current(ctx context.Context, user string) (keyrot.Credentials, error) {
	if m.CurrentFn == nil {
		panic(unset("SecretStore.Current"))
	}
	return m.CurrentFn(ctx, user)
}

// Deliverer is a keyrot.Deliverer.
type Deliverer struct {
	DeliverFn func(ctx context.Context, creds keyrot.Credentials) error
}

var _ keyrot.Deliverer = (*Deliverer)(nil)

// Deliver calls DeliverFn.
func (m *Deliverer) Deliver(ctx context.Context, creds keyrot.Credentials) error {
	if m.DeliverFn == nil {
		panic(unset("Deliverer.Deliver"))
	}
	return m.DeliverFn(ctx, creds)
}

// Notifier is a mock keyrot.Notifier that records every event it is given.
// NotifyFn, if set, is called after recording and its error returned. It is
// safe for concurrent use.
type Notifier struct {
	NotifyFn func(ctx context.Context, e keyrot.Event) error

	mu     sync.Mutex
	events []keyrot.Event
}

var _ keyrot.Notifier = (*Notifier)(nil)

// Notify records e and calls NotifyFn if set.
func (m *Notifier) Notify(ctx context.Context, e keyrot.Event) error {
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
	if m.NotifyFn != nil {
		return m.NotifyFn(ctx, e)
	}
	return nil
}

// Events returns a copy of the events received so far, in order.
func (m *Notifier) Events() []keyrot.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// Count returns how many events of kind were received.
func (m *Notifier) Count(kind keyrot.EventKind) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// Reset forgets the events received so far.
func (m *Notifier) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = nil
}

// Publisher is a mock keyrot.CredentialsPublisher that records every
// publication. PublishFn, if set, is called after recording. It is safe for
// concurrent use.
type Publisher struct {
	PublishFn func(creds keyrot.Credentials)

	mu        sync.Mutex
	published []keyrot.Credentials
}

var _ keyrot.CredentialsPublisher = (*Publisher)(nil)

// Publish records creds and calls PublishFn if set.
func (m *Publisher) Publish(creds keyrot.Credentials) {
	m.mu.Lock()
	m.published = append(m.published, creds)
	m.mu.Unlock()
	if m.PublishFn != nil {
		m.PublishFn(creds)
	}
}

// Published returns a copy of the credentials published so far, in order.
func (m *Publisher) Published() []keyrot.Credentials {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.published)
}

// Clock is a keyrot.Clock driven by the test (it also satisfies the sandbox's
// Clock, which only needs Now). Time stands still until Advance or Set moves
// it; After returns a channel that receives once the clock reaches the
// deadline. In auto-advance mode After moves the clock forward by d itself and
// returns a channel that has already fired, so code that waits on the clock
// (backoff, retries) runs instantly. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	timers  []*timer
	waits   []time.Duration
	changed chan struct{} // closed and replaced whenever timers change
}

type timer struct {
	at time.Time
	ch chan time.Time
}

var _ keyrot.Clock = (*Clock)(nil)

// NewClock returns a clock stopped at t. The zero Clock is stopped at the
// zero time.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// SetAutoAdvance turns auto-advance mode on or off. Turning it on fires
// nothing by itself: pending timers fire when the clock next moves.
func (c *Clock) SetAutoAdvance(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auto = on
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once it has reached
// now+d. With d <= 0 the channel has fired already. In auto-advance mode the
// clock first moves forward by d (firing any other timer it passes).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if c.auto && d > 0 {
		c.now = c.now.Add(d)
		c.fireLocked()
	}
	if d <= 0 || c.auto {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, &timer{at: c.now.Add(d), ch: ch})
	c.notifyLocked()
	return ch
}

// Advance moves the clock forward by d and fires every timer whose deadline
// it reached, earliest first.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

// Set moves the clock to t (which may be earlier) and fires every timer whose
// deadline it reached.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.fireLocked()
}

// Timers returns the deadlines of the timers still waiting, earliest first.
func (c *Clock) Timers() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Time, len(c.timers))
	for i, t := range c.timers {
		out[i] = t.at
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// Waits returns every duration After was called with, in order.
func (c *Clock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.waits)
}

// BlockUntil waits until at least n timers are pending (someone is waiting on
// the clock), or ctx ends. Tests call it before Advance so that they move
// time only once the code under test is waiting, without sleeping.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		pending, changed := len(c.timers), c.changed
		c.mu.Unlock()
		if pending >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("mock: clock: %d timer(s) pending, want %d: %w", pending, n, context.Cause(ctx))
		}
	}
}

// AwaitTimer waits until a timer for exactly the time at is pending
// (someone waits on the clock for that moment), or ctx ends.
func (c *Clock) AwaitTimer(ctx context.Context, at time.Time) error {
	for {
		c.mu.Lock()
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		found, changed := slices.ContainsFunc(c.timers, func(t *timer) bool { return t.at.Equal(at) }), c.changed
		c.mu.Unlock()
		if found {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("mock: clock: nobody waits for %s: %w", at.Format(time.RFC3339Nano), context.Cause(ctx))
		}
	}
}

func (c *Clock) fireLocked() {
	slices.SortStableFunc(c.timers, func(a, b *timer) int { return a.at.Compare(b.at) })
	fired := 0
	for _, t := range c.timers {
		if t.at.After(c.now) {
			break
		}
		t.ch <- c.now
		fired++
	}
	if fired > 0 {
		c.timers = slices.Delete(c.timers, 0, fired)
		c.notifyLocked()
	}
}

func (c *Clock) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}
