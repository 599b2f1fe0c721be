package keyrot_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/mock"
)

// faultMode is what a flaky call does.
type faultMode int

const (
	callOK       faultMode = iota
	failBefore             // fails, nothing happened
	lostResponse           // took effect, then the caller was told it failed
	timedOut               // took effect or not, the caller cannot tell
)

// faulter draws, call by call, whether to inject a fault. It records what
// the world did so that the invariants can be checked afterwards.
type faulter struct {
	mu   sync.Mutex
	rng  *rand.Rand
	rate float64
	on   bool
}

func (f *faulter) roll() faultMode {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.on || f.rng.Float64() >= f.rate {
		return callOK
	}
	return faultMode(1 + f.rng.Intn(3))
}

var errInjected = errors.New("injected: ServiceUnavailable")

// flaky runs call under the faulter's mode: a failure before it, a response
// lost after it, or a timeout on either side.
func flaky[T any](f *faulter, call func() (T, error)) (T, error) {
	var zero T
	switch f.roll() {
	case failBefore:
		return zero, errInjected
	case lostResponse:
		if _, err := call(); err != nil {
			return zero, err
		}
		return zero, errInjected
	case timedOut:
		if f.roll() == callOK { // half the time it reached AWS
			_, _ = call()
		}
		return zero, fmt.Errorf("request: %w", context.DeadlineExceeded)
	}
	return call()
}

func flaky0(f *faulter, call func() error) error {
	_, err := flaky(f, func() (struct{}, error) { return struct{}{}, call() })
	return err
}

// ledger is what really happened in the world, to check the events against.
type ledger struct {
	mu            sync.Mutex
	clock         func() time.Time
	inactiveSince map[string]time.Time // key -> when IAM set it Inactive
	promoted      map[string]int       // key -> times it became current
	deactivated   map[string]int       // key -> times keyrot set it Inactive
	deleted       map[string]int       // key -> times keyrot deleted it
	foreign       map[string]bool      // keys keyrot did not create
	byPerson      map[string]bool      // keys a person deleted
	violations    []string
}

func (l *ledger) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violations = append(l.violations, fmt.Sprintf(format, args...))
}

// TestRotatorUnderFaultsProperties drives the Rotator through many passes
// over users in several starting states, against a world whose every call
// may fail, time out or lose its response after taking effect, with
// restarts (a fresh Rotator) between passes. After each run it checks:
// never more than two keys; no key deleted before it was Inactive for
// delete_after; every deletion by keyrot of a key it did not create came
// after keyrot deactivated it; once faults stop, every user reaches a
// working current key; every key made current, deactivated and deleted is
// told (exactly once without restarts, at most once more per restart).
func TestRotatorUnderFaultsProperties(t *testing.T) {
	const runs = 150
	for seed := int64(1); seed <= runs; seed++ {
		seed := seed
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			runFaultScenario(t, seed)
		})
	}
}

func runFaultScenario(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	w := newWorld(t)
	f := &faulter{rng: rand.New(rand.NewSource(seed * 7919)), rate: 0.05 + rng.Float64()*0.25, on: true}
	l := &ledger{clock: w.clock.Now, inactiveSince: map[string]time.Time{}, promoted: map[string]int{},
		deactivated: map[string]int{}, deleted: map[string]int{}, foreign: map[string]bool{}, byPerson: map[string]bool{}}
	restarts := rng.Intn(2) == 0
	policy := keyrot.DefaultPolicy()
	if rng.Intn(3) == 0 {
		policy.UnmanagedKeys = keyrot.ReportUnmanaged
	}
	policy.VerifyTimeout = 20 * time.Second

	// Users in every starting state the README names.
	users := []string{"fresh", "one-foreign", "two-foreign", "foreign-inactive"}
	for _, u := range users {
		w.addUser(u, nil)
	}
	addForeign := func(user, id string, status keyrot.KeyStatus, created time.Time) {
		w.addKey(user, id, status, created)
		l.foreign[id] = true
		if status == keyrot.KeyInactive {
			l.inactiveSince[id] = created
		}
	}
	addForeign("one-foreign", "AKIAFOREIGN1", keyrot.KeyActive, ago(100*24*time.Hour))
	addForeign("two-foreign", "AKIAFOREIGN2", keyrot.KeyActive, ago(100*24*time.Hour))
	addForeign("two-foreign", "AKIAFOREIGN3", keyrot.KeyActive, ago(50*24*time.Hour))
	w.lastUsed["AKIAFOREIGN3"] = ago(time.Minute) // in use
	addForeign("foreign-inactive", "AKIAFOREIGN4", keyrot.KeyActive, ago(100*24*time.Hour))
	addForeign("foreign-inactive", "AKIAFOREIGN5", keyrot.KeyInactive, ago(50*24*time.Hour))

	wrapWorld(w, f, l)
	// A delivery target carries every user's key and fails like the rest.
	if rng.Intn(2) == 0 {
		policy.SyncOnFailure = keyrot.SyncProceed
	}
	const target = "github/acme/app"
	deliverer := &mock.Deliverer{DeliverFn: func(_ context.Context, c keyrot.Credentials) error {
		return flaky0(f, func() error { return nil })
	}}
	guardDeactivation(w, l, policy, target)
	newRotator := func() *keyrot.Rotator {
		return w.rotator(func(c *keyrot.RotatorConfig) {
			c.Policy = policy
			c.Concurrency = 1 // the faulter's draws stay in one order: runs repeat by seed
			c.Targets = []keyrot.DeliveryTarget{{ID: target, Users: []string{"*"}, Deliverer: deliverer}}
		})
	}
	r := newRotator()
	passes, restarted := 60+rng.Intn(60), 0
	var healedFrom time.Time
	for pass := range passes + 40 {
		if pass == passes {
			f.mu.Lock()
			f.on = false // faults stop; the world must heal
			f.mu.Unlock()
			healedFrom = w.clock.Now()
		}
		if restarts && rng.Intn(10) == 0 {
			r, restarted = newRotator(), restarted+1
		}
		if pass < passes {
			interfere(w, l, rng, users)
		}
		_, _ = r.ReconcileAll(context.Background(), keyrot.RunOptions{Force: rng.Intn(25) == 0})
		for _, u := range users {
			if n := len(w.iamKeys(u)); n > 2 {
				l.violate("pass %d: %s has %d keys", pass, u, n)
			}
		}
		w.clock.Advance(time.Duration(5+rng.Intn(40)) * time.Second)
	}

	for _, v := range l.violations {
		t.Error(v)
	}
	// Every user has a working current key; under report, a user with two
	// keys keyrot cannot show are its own waits for a person, and is told so.
	for _, u := range users {
		st := w.state(u)
		keys := w.iamKeys(u)
		if policy.UnmanagedKeys == keyrot.ReportUnmanaged && len(keys) == 2 && slices.ContainsFunc(keys, func(k keyrot.AccessKey) bool { return !st.Owns(k.ID) }) {
			if !slices.Contains(describeEvents(w.notifier.Events(), u), "warning:key_limit") {
				t.Errorf("%s: stuck at two keys under report and never told", u)
			}
			continue
		}
		if st.Current == nil {
			t.Errorf("%s: no current key after the faults stopped (intent %+v)", u, st.Intent)
			continue
		}
		if err := w.verifyKey(context.Background(), mustCurrent(t, w, u)); err != nil {
			t.Errorf("%s: current key %s does not work: %v", u, st.Current.KeyID, err)
		}
		// And rotation goes on: a key made since the faults stopped.
		if st.Current.CreateDate.Before(healedFrom) {
			t.Errorf("%s: current key %s dates from %v, before the faults stopped at %v: rotation is stuck", u, st.Current.KeyID, st.Current.CreateDate, healedFrom)
		}
	}
	// Every change told: exactly once, or at most once more per restart.
	told := map[string]int{}
	for _, e := range w.notifier.Events() {
		told[string(e.Kind)+" "+e.KeyID]++
	}
	check := func(kind keyrot.EventKind, changed map[string]int) {
		for id, n := range changed {
			if n == 0 {
				continue
			}
			got := told[string(kind)+" "+id]
			if got < 1 || got > 1+restarted {
				t.Errorf("%s of %s told %d times (restarts: %d)", kind, id, got, restarted)
			}
		}
	}
	check(keyrot.EventKeyCreated, l.promoted)
	check(keyrot.EventKeyDeleted, l.deleted)
	deactivatedTold := map[string]int{}
	for id, n := range l.deactivated {
		// A person who deletes a key between its deactivation and the
		// report leaves its deletion to tell; orphans are told by an
		// orphan_key warning instead.
		if !l.byPerson[id] && (l.foreign[id] || l.promoted[id] > 0) {
			deactivatedTold[id] = n // orphans are told by an orphan_key warning instead
		}
	}
	check(keyrot.EventKeyDeactivated, deactivatedTold)
	if t.Failed() {
		t.Logf("seed %d, fault rate %.2f, policy %s, restarts %d, %d events", seed, f.rate, policy.UnmanagedKeys, restarted, len(w.notifier.Events()))
	}
}

// interfere plays the people who share the account with keyrot: now and
// then one deletes a key that is not the current one (a pending key, a
// previous key), or creates a key for a user.
func interfere(w *world, l *ledger, rng *rand.Rand, users []string) {
	u := users[rng.Intn(len(users))]
	switch n := rng.Intn(100); {
	case n < 3:
		st := w.state(u)
		for _, k := range w.iamKeys(u) {
			if st.Current == nil || k.ID != st.Current.KeyID {
				l.mu.Lock()
				l.byPerson[k.ID] = true
				l.mu.Unlock()
				w.mu.Lock()
				ku := w.users[u]
				ku.keys = slices.DeleteFunc(ku.keys, func(x keyrot.AccessKey) bool { return x.ID == k.ID })
				w.mu.Unlock()
				return
			}
		}
	case n < 5:
		if len(w.iamKeys(u)) < 2 {
			id := fmt.Sprintf("AKIAPERSON%010d", rng.Intn(1e9))
			w.addKey(u, id, keyrot.KeyActive, w.clock.Now().Truncate(time.Second))
			l.mu.Lock()
			l.foreign[id] = true
			l.mu.Unlock()
		}
	}
}

func mustCurrent(t *testing.T, w *world, user string) keyrot.Credentials {
	t.Helper()
	c, err := w.current(context.Background(), user)
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	return c
}

// wrapWorld makes every call of the world's mocks flaky, and records in l
// what really happened.
func wrapWorld(w *world, f *faulter, l *ledger) {
	k, s, v := w.keys, w.secrets, w.verifier
	listKeys, create, setStatus, del, lastUsed := k.ListAccessKeysFn, k.CreateAccessKeyFn, k.SetKeyStatusFn, k.DeleteAccessKeyFn, k.KeyLastUsedFn
	getUser := k.GetUserFn
	k.GetUserFn = func(ctx context.Context, name string) (keyrot.User, error) {
		return flaky(f, func() (keyrot.User, error) { return getUser(ctx, name) })
	}
	k.ListAccessKeysFn = func(ctx context.Context, user string) ([]keyrot.AccessKey, error) {
		return flaky(f, func() ([]keyrot.AccessKey, error) { return listKeys(ctx, user) })
	}
	k.CreateAccessKeyFn = func(ctx context.Context, user string) (keyrot.Credentials, error) {
		return flaky(f, func() (keyrot.Credentials, error) { return create(ctx, user) })
	}
	k.SetKeyStatusFn = func(ctx context.Context, user, id string, st keyrot.KeyStatus) error {
		return flaky0(f, func() error {
			before := keyStatus(w, user, id)
			err := setStatus(ctx, user, id, st)
			if err == nil && st == keyrot.KeyInactive && before == keyrot.KeyActive {
				l.mu.Lock()
				l.inactiveSince[id] = l.clock()
				l.deactivated[id]++
				l.mu.Unlock()
			}
			return err
		})
	}
	k.DeleteAccessKeyFn = func(ctx context.Context, user, id string) error {
		return flaky0(f, func() error {
			st := keyStatus(w, user, id)
			err := del(ctx, user, id)
			if err != nil {
				return err
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			since, ok := l.inactiveSince[id]
			switch {
			case st != keyrot.KeyInactive:
				l.violations = append(l.violations, fmt.Sprintf("deleted %s key %s of %s", st, id, user))
			case !ok || l.clock().Sub(since) < keyrot.DefaultPolicy().DeleteAfter:
				// A key keyrot did not create that was Active is deleted only
				// after keyrot deactivated it (inactiveSince is set then).
				l.violations = append(l.violations, fmt.Sprintf("deleted key %s of %s inactive since %v, less than delete_after", id, user, since))
			}
			l.deleted[id]++
			return nil
		})
	}
	k.KeyLastUsedFn = func(ctx context.Context, id string) (time.Time, error) {
		return flaky(f, func() (time.Time, error) { return lastUsed(ctx, id) })
	}
	verify := v.VerifyKeyFn
	v.VerifyKeyFn = func(ctx context.Context, c keyrot.Credentials) error {
		return flaky0(f, func() error { return verify(ctx, c) })
	}

	load, initFn, begin, store, promote, clearIntent := s.LoadFn, s.InitFn, s.BeginCreateFn, s.StorePendingFn, s.PromoteFn, s.ClearIntentFn
	markInactive, markDeactivating, markSeen, reported, markFailing := s.MarkInactiveFn, s.MarkDeactivatingFn, s.MarkSeenFn, s.ReportedFn, s.MarkFailingFn
	markWarned, clearWarned, forget := s.MarkWarnedFn, s.ClearWarnedFn, s.ForgetFn
	s.LoadFn = func(ctx context.Context, user string) (keyrot.SecretState, error) {
		return flaky(f, func() (keyrot.SecretState, error) { return load(ctx, user) })
	}
	s.InitFn = func(ctx context.Context, u keyrot.User) error {
		return flaky0(f, func() error { return initFn(ctx, u) })
	}
	s.BeginCreateFn = func(ctx context.Context, u keyrot.User, in keyrot.Intent) error {
		return flaky0(f, func() error { return begin(ctx, u, in) })
	}
	tokens := map[string]string{} // "user/generation" -> the key stored under that version token
	var tokensMu sync.Mutex
	s.StorePendingFn = func(ctx context.Context, in keyrot.Intent, c keyrot.Credentials) (keyrot.StoredKey, error) {
		return flaky(f, func() (keyrot.StoredKey, error) {
			// Secrets Manager keeps a version under its token after the
			// intent is gone: a reused token with another key conflicts.
			tok := fmt.Sprintf("%s/%d", c.UserName, in.Generation)
			tokensMu.Lock()
			prev, seen := tokens[tok]
			if !seen {
				tokens[tok] = c.AccessKeyID
			}
			tokensMu.Unlock()
			if seen && prev != c.AccessKeyID {
				return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: token %s holds another key: %w", tok, keyrot.ErrConflict)
			}
			return store(ctx, in, c)
		})
	}
	s.PromoteFn = func(ctx context.Context, user string, p keyrot.StoredKey, prev string, since time.Time, t keyrot.Timings) error {
		return flaky0(f, func() error {
			before := w.state(user).Current
			err := promote(ctx, user, p, prev, since, t)
			if err == nil && (before == nil || before.KeyID != p.KeyID) {
				l.mu.Lock()
				l.promoted[p.KeyID]++
				l.mu.Unlock()
			}
			return err
		})
	}
	s.ClearIntentFn = func(ctx context.Context, user string) error {
		return flaky0(f, func() error { return clearIntent(ctx, user) })
	}
	setTimings := s.SetTimingsFn
	s.SetTimingsFn = func(ctx context.Context, user string, t keyrot.Timings) error {
		return flaky0(f, func() error { return setTimings(ctx, user, t) })
	}
	withTime := func(fn func(context.Context, string, string, time.Time) error) func(context.Context, string, string, time.Time) error {
		return func(ctx context.Context, user, id string, at time.Time) error {
			return flaky0(f, func() error { return fn(ctx, user, id, at) })
		}
	}
	s.MarkInactiveFn, s.MarkDeactivatingFn, s.MarkSeenFn = withTime(markInactive), withTime(markDeactivating), withTime(markSeen)
	s.ReportedFn = func(ctx context.Context, user, id string) error {
		return flaky0(f, func() error { return reported(ctx, user, id) })
	}
	s.MarkFailingFn = func(ctx context.Context, user string, since time.Time) error {
		return flaky0(f, func() error { return markFailing(ctx, user, since) })
	}
	s.MarkWarnedFn = func(ctx context.Context, user string, kind keyrot.WarningKind, id string, at time.Time) error {
		return flaky0(f, func() error { return markWarned(ctx, user, kind, id, at) })
	}
	s.ClearWarnedFn = func(ctx context.Context, user string, kind keyrot.WarningKind) error {
		return flaky0(f, func() error { return clearWarned(ctx, user, kind) })
	}
	s.ForgetFn = func(ctx context.Context, user, id string) error {
		return flaky0(f, func() error { return forget(ctx, user, id) })
	}
	markDelivery := s.MarkDeliveryFn
	s.MarkDeliveryFn = func(ctx context.Context, user, target string, d keyrot.Delivery) error {
		return flaky0(f, func() error { return markDelivery(ctx, user, target, d) })
	}
}

// guardDeactivation records as a violation every deactivation of a key
// that was once current while the target has not confirmed its successor,
// unless the hold ran out under on_failure: proceed.
func guardDeactivation(w *world, l *ledger, p keyrot.Policy, target string) {
	setStatus := w.keys.SetKeyStatusFn
	w.keys.SetKeyStatusFn = func(ctx context.Context, user, id string, status keyrot.KeyStatus) error {
		st := w.state(user)
		l.mu.Lock()
		wasCurrent := l.promoted[id] > 0
		l.mu.Unlock()
		if status == keyrot.KeyInactive && wasCurrent && st.Current != nil && st.Current.KeyID != id && keyStatus(w, user, id) == keyrot.KeyActive {
			holdEnds := st.Current.CreateDate.Add(p.RotateEvery)
			if confirmed := st.Delivered[target].KeyID == st.Current.KeyID; !confirmed &&
				(p.SyncOnFailure != keyrot.SyncProceed || l.clock().Before(holdEnds)) {
				l.violate("deactivated %s of %s before %s confirmed its successor %s (on_failure %q)", id, user, target, st.Current.KeyID, p.SyncOnFailure)
			}
		}
		return setStatus(ctx, user, id, status)
	}
}

func keyStatus(w *world, user, id string) keyrot.KeyStatus {
	i := slices.IndexFunc(w.iamKeys(user), func(k keyrot.AccessKey) bool { return k.ID == id })
	if i < 0 {
		return ""
	}
	return w.iamKeys(user)[i].Status
}
