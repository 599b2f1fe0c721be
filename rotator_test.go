package keyrot_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
)

// The driven clock also drives the sandbox.
var _ sandbox.Clock = (*mock.Clock)(nil)

// world is an in-memory IAM and Secrets Manager behind the mocks: each mock
// function field is set to a small faithful implementation, and a test
// replaces (usually wraps) the fields it wants to fail. Every call is logged.
type world struct {
	t         *testing.T
	clock     *mock.Clock
	keys      *mock.KeyManager
	verifier  *mock.KeyVerifier
	secrets   *mock.SecretStore
	notifier  *mock.Notifier
	publisher *mock.Publisher
	logs      *testkit.Buffer

	mu       sync.Mutex
	users    map[string]*fakeUser
	groups   map[string][]string
	lastUsed map[string]time.Time
	calls    []string // "user: Method key"
	nextKey  int
	issued   []string // every secret access key IAM handed out
}

type fakeUser struct {
	user     keyrot.User
	keys     []keyrot.AccessKey
	secretOf map[string]string
	state    keyrot.SecretState
	current  keyrot.Credentials
}

// newWorld returns an empty world whose clock stands at now and advances by
// itself whenever the code under test waits on it.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{
		t:         t,
		clock:     mock.NewClock(now),
		notifier:  &mock.Notifier{},
		publisher: &mock.Publisher{},
		logs:      &testkit.Buffer{},
		users:     map[string]*fakeUser{},
		groups:    map[string][]string{},
		lastUsed:  map[string]time.Time{},
	}
	w.clock.SetAutoAdvance(true)
	w.keys = &mock.KeyManager{
		ListUsersFn:       w.listUsers,
		GetUserFn:         w.getUser,
		GroupMembersFn:    w.groupMembers,
		ListAccessKeysFn:  w.listAccessKeys,
		CreateAccessKeyFn: w.createAccessKey,
		SetKeyStatusFn:    w.setKeyStatus,
		DeleteAccessKeyFn: w.deleteAccessKey,
		KeyLastUsedFn:     w.keyLastUsed,
	}
	w.verifier = &mock.KeyVerifier{VerifyKeyFn: w.verifyKey}
	w.secrets = &mock.SecretStore{
		LoadFn:             w.load,
		InitFn:             w.init,
		BeginCreateFn:      w.beginCreate,
		StorePendingFn:     w.storePending,
		PromoteFn:          w.promote,
		SetTimingsFn:       w.setTimings,
		ClearIntentFn:      w.clearIntent,
		MarkInactiveFn:     w.markInactive,
		MarkDeactivatingFn: w.markDeactivating,
		MarkSeenFn:         w.markSeen,
		ReportedFn:         w.reported,
		MarkFailingFn:      w.markFailing,
		MarkWarnedFn:       w.markWarned,
		ClearWarnedFn:      w.clearWarned,
		ForgetFn:           w.forget,
		MarkDeliveryFn:     w.markDelivery,
		CurrentFn:          w.current,
	}
	return w
}

// rotator returns a Rotator on the world managing the named users (all the
// world's users if none), with the seed policy; edit, if set, adjusts the config.
func (w *world) rotator(edit func(*keyrot.RotatorConfig), names ...string) *keyrot.Rotator {
	w.t.Helper()
	if len(names) == 0 {
		w.mu.Lock()
		names = slices.Sorted(maps.Keys(w.users))
		w.mu.Unlock()
	}
	cfg := keyrot.RotatorConfig{
		Keys:      w.keys,
		Verifier:  w.verifier,
		Secrets:   w.secrets,
		Notifier:  w.notifier,
		Publisher: w.publisher,
		Policy:    keyrot.DefaultPolicy(),
		Users:     keyrot.UserSelector{Names: names},
		Clock:     w.clock,
		Logger:    slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	r, err := keyrot.NewRotator(cfg)
	if err != nil {
		w.t.Fatalf("NewRotator: %v", err)
	}
	return r
}

func (w *world) addUser(name string, tags map[string]string) *fakeUser {
	w.mu.Lock()
	defer w.mu.Unlock()
	u := &fakeUser{
		user:     keyrot.User{Name: name, ARN: "arn:aws:iam::123456789012:user/" + name, Path: "/", Tags: tags},
		secretOf: map[string]string{},
	}
	w.users[name] = u
	return u
}

// addKey gives a user a key created at created, as if made outside this test.
func (w *world) addKey(user, id string, status keyrot.KeyStatus, created time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	u := w.users[user]
	u.keys = append(u.keys, keyrot.AccessKey{ID: id, UserName: user, Status: status, CreateDate: created})
	u.secretOf[id] = "existing-secret-" + id
	w.issued = append(w.issued, u.secretOf[id])
}

// setState replaces a user's secret state.
func (w *world) setState(user string, s keyrot.SecretState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.users[user].state = s
}

func (w *world) state(user string) keyrot.SecretState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return cloneState(w.users[user].state)
}

func (w *world) iamKeys(user string) []keyrot.AccessKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.users[user].keys)
}

func (w *world) iamKeyIDs(user string) []string {
	var ids []string
	for _, k := range w.iamKeys(user) {
		ids = append(ids, k.ID)
	}
	return ids
}

func (w *world) issuedSecrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.issued)
}

func (w *world) record(user, method, key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, strings.TrimSpace(user+": "+method+" "+key))
}

// callsOf returns the user's calls to the given methods ("Method key"), in order.
func (w *world) callsOf(user string, methods ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.calls {
		rest, ok := strings.CutPrefix(c, user+": ")
		if !ok {
			continue
		}
		m, _, _ := strings.Cut(rest, " ")
		if len(methods) == 0 || slices.Contains(methods, m) {
			out = append(out, rest)
		}
	}
	return out
}

func (w *world) count(user, method string) int { return len(w.callsOf(user, method)) }

func (w *world) user(name string) (*fakeUser, error) {
	u, ok := w.users[name]
	if !ok {
		return nil, fmt.Errorf("iam: user %q: %w", name, keyrot.ErrUserNotFound)
	}
	return u, nil
}

func (w *world) listUsers(_ context.Context, prefix string) ([]keyrot.User, error) {
	w.record("", "ListUsers", prefix)
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []keyrot.User
	for _, name := range slices.Sorted(maps.Keys(w.users)) {
		u := w.users[name].user
		u.Tags = nil // IAM does not list tags
		out = append(out, u)
	}
	return out, nil
}

func (w *world) getUser(_ context.Context, name string) (keyrot.User, error) {
	w.record(name, "GetUser", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(name)
	if err != nil {
		return keyrot.User{}, err
	}
	return u.user, nil
}

func (w *world) groupMembers(_ context.Context, group string) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m, ok := w.groups[group]
	if !ok {
		return nil, fmt.Errorf("iam: group %q: %w", group, keyrot.ErrUserNotFound)
	}
	return slices.Clone(m), nil
}

func (w *world) listAccessKeys(_ context.Context, user string) ([]keyrot.AccessKey, error) {
	w.record(user, "ListAccessKeys", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return nil, err
	}
	return slices.Clone(u.keys), nil
}

func (w *world) createAccessKey(_ context.Context, user string) (keyrot.Credentials, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return keyrot.Credentials{}, err
	}
	if len(u.keys) >= 2 {
		return keyrot.Credentials{}, fmt.Errorf("iam: create access key for user %q: %w", user, keyrot.ErrKeyLimit)
	}
	w.nextKey++
	id := fmt.Sprintf("AKIA%012d", w.nextKey)
	secret := fmt.Sprintf("wJalrXUtnFEMI/K7MDENG/%s/%04d/SECRETxEXAMPLEKEY", user, w.nextKey)
	created := w.clock.Now().Truncate(time.Second) // IAM dates keys to the second
	u.keys = append(u.keys, keyrot.AccessKey{ID: id, UserName: user, Status: keyrot.KeyActive, CreateDate: created})
	u.secretOf[id] = secret
	w.issued = append(w.issued, secret)
	w.calls = append(w.calls, user+": CreateAccessKey "+id)
	return keyrot.Credentials{UserName: user, AccessKeyID: id, SecretAccessKey: secret, CreateDate: created}, nil
}

func (w *world) findKey(user, id string) (*fakeUser, int, error) {
	u, err := w.user(user)
	if err != nil {
		return nil, 0, err
	}
	i := slices.IndexFunc(u.keys, func(k keyrot.AccessKey) bool { return k.ID == id })
	if i < 0 {
		return nil, 0, fmt.Errorf("iam: key %s of user %q: %w", id, user, keyrot.ErrKeyNotFound)
	}
	return u, i, nil
}

func (w *world) setKeyStatus(_ context.Context, user, id string, status keyrot.KeyStatus) error {
	w.record(user, "SetKeyStatus", id+" "+string(status))
	w.mu.Lock()
	defer w.mu.Unlock()
	u, i, err := w.findKey(user, id)
	if err != nil {
		return err
	}
	u.keys[i].Status = status
	return nil
}

func (w *world) deleteAccessKey(_ context.Context, user, id string) error {
	w.record(user, "DeleteAccessKey", id)
	w.mu.Lock()
	defer w.mu.Unlock()
	u, i, err := w.findKey(user, id)
	if err != nil {
		return err
	}
	u.keys = slices.Delete(u.keys, i, i+1)
	return nil
}

func (w *world) keyLastUsed(_ context.Context, id string) (time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, u := range w.users {
		if slices.ContainsFunc(u.keys, func(k keyrot.AccessKey) bool { return k.ID == id }) {
			w.calls = append(w.calls, name+": KeyLastUsed "+id)
		}
	}
	return w.lastUsed[id], nil
}

func (w *world) verifyKey(_ context.Context, c keyrot.Credentials) error {
	w.record(c.UserName, "VerifyKey", c.AccessKeyID)
	w.mu.Lock()
	defer w.mu.Unlock()
	u, i, err := w.findKey(c.UserName, c.AccessKeyID)
	if err != nil || u.keys[i].Status != keyrot.KeyActive || u.secretOf[c.AccessKeyID] != c.SecretAccessKey {
		return fmt.Errorf("sts: get caller identity with key %s: %w", c.AccessKeyID, keyrot.ErrKeyRejected)
	}
	return nil
}

func cloneState(s keyrot.SecretState) keyrot.SecretState {
	s.Inactive = maps.Clone(s.Inactive)
	s.Seen = maps.Clone(s.Seen)
	s.Unreported = maps.Clone(s.Unreported)
	s.Warned = maps.Clone(s.Warned)
	s.Delivered = maps.Clone(s.Delivered)
	if s.Current != nil {
		k := *s.Current
		s.Current = &k
	}
	if s.Pending != nil {
		k := *s.Pending
		s.Pending = &k
	}
	if s.Intent != nil {
		in := *s.Intent
		s.Intent = &in
	}
	return s
}

func (w *world) load(_ context.Context, user string) (keyrot.SecretState, error) {
	w.record(user, "Load", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return keyrot.SecretState{}, nil
	}
	return cloneState(u.state), nil
}

// edit applies change to a user's secret state, which must exist.
func (w *world) edit(user, method, key string, change func(s *keyrot.SecretState)) error {
	w.record(user, method, key)
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return err
	}
	if !u.state.Exists {
		return fmt.Errorf("secretsmanager: %s for %q: %w", method, user, keyrot.ErrSecretNotFound)
	}
	change(&u.state)
	return nil
}

func (w *world) init(_ context.Context, user keyrot.User) error {
	w.record(user.Name, "Init", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user.Name)
	if err != nil {
		return err
	}
	u.state.Exists = true
	return nil
}

func (w *world) beginCreate(_ context.Context, user keyrot.User, intent keyrot.Intent) error {
	w.record(user.Name, "BeginCreate", fmt.Sprintf("gen=%d", intent.Generation))
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user.Name)
	if err != nil {
		return err
	}
	u.state.Exists = true
	u.state.Intent = &intent
	u.state.LastIntent = max(u.state.LastIntent, intent.Generation)
	return nil
}

func (w *world) storePending(_ context.Context, intent keyrot.Intent, c keyrot.Credentials) (keyrot.StoredKey, error) {
	w.record(c.UserName, "StorePending", c.AccessKeyID)
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(c.UserName)
	if err != nil {
		return keyrot.StoredKey{}, err
	}
	if p := u.state.Pending; p != nil && p.Generation == intent.Generation && p.KeyID != c.AccessKeyID {
		return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: store pending: %w", keyrot.ErrConflict)
	}
	k := keyrot.StoredKey{KeyID: c.AccessKeyID, CreateDate: c.CreateDate, Generation: intent.Generation,
		Secret: fmt.Sprintf("iam-key-rotation/%s-%d", c.UserName, intent.Member), VersionID: fmt.Sprintf("%s-%d", c.UserName, intent.Generation), Creds: c}
	u.state.Pending = &k
	return k, nil
}

func (w *world) setTimings(_ context.Context, user string, t keyrot.Timings) error {
	return w.edit(user, "SetTimings", "", func(s *keyrot.SecretState) { s.Timings = t })
}

func (w *world) promote(_ context.Context, user string, pending keyrot.StoredKey, previous string, since time.Time, t keyrot.Timings) error {
	w.record(user, "Promote", pending.KeyID)
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return err
	}
	u.current = pending.Creds
	u.current.CurrentSince, u.current.Timings = since, t
	u.state.Timings = t
	cur := pending
	cur.Creds = keyrot.Credentials{}
	u.state.Current, u.state.CurrentSince, u.state.PreviousKeyID = &cur, since, previous
	u.state.Generation = pending.Generation
	u.state.Intent, u.state.Pending = nil, nil
	if u.state.Unreported == nil {
		u.state.Unreported = map[string]keyrot.EventKind{}
	}
	u.state.Unreported[pending.KeyID] = keyrot.EventKeyCreated
	return nil
}

func (w *world) clearIntent(_ context.Context, user string) error {
	w.record(user, "ClearIntent", "")
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return err
	}
	u.state.Intent, u.state.Pending = nil, nil
	return nil
}

func (w *world) markInactive(_ context.Context, user, id string, at time.Time) error {
	return w.edit(user, "MarkInactive", id, func(s *keyrot.SecretState) {
		if s.Inactive == nil {
			s.Inactive = map[string]time.Time{}
		}
		s.Inactive[id] = at
	})
}

func (w *world) markDeactivating(_ context.Context, user, id string, at time.Time) error {
	return w.edit(user, "MarkDeactivating", id, func(s *keyrot.SecretState) {
		if s.Inactive == nil {
			s.Inactive = map[string]time.Time{}
		}
		if s.Unreported == nil {
			s.Unreported = map[string]keyrot.EventKind{}
		}
		s.Inactive[id] = at
		s.Unreported[id] = keyrot.EventKeyDeactivated
	})
}

func (w *world) markSeen(_ context.Context, user, id string, at time.Time) error {
	return w.edit(user, "MarkSeen", id, func(s *keyrot.SecretState) {
		if s.Seen == nil {
			s.Seen = map[string]time.Time{}
		}
		s.Seen[id] = at
	})
}

func (w *world) reported(_ context.Context, user, id string) error {
	return w.edit(user, "Reported", id, func(s *keyrot.SecretState) { delete(s.Unreported, id) })
}

func (w *world) markFailing(_ context.Context, user string, since time.Time) error {
	return w.edit(user, "MarkFailing", "", func(s *keyrot.SecretState) { s.FailingSince = since })
}

func (w *world) markDelivery(_ context.Context, user, target string, d keyrot.Delivery) error {
	return w.edit(user, "MarkDelivery", target, func(s *keyrot.SecretState) {
		if s.Delivered == nil {
			s.Delivered = map[string]keyrot.Delivery{}
		}
		s.Delivered[target] = d
	})
}

func (w *world) markWarned(_ context.Context, user string, kind keyrot.WarningKind, id string, at time.Time) error {
	w.record(user, "MarkWarned", string(kind))
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return err
	}
	if u.state.Warned == nil {
		u.state.Warned = map[keyrot.WarningKind]keyrot.WarnRecord{}
	}
	u.state.Warned[kind] = keyrot.WarnRecord{KeyID: id, At: at}
	return nil
}

func (w *world) clearWarned(_ context.Context, user string, kind keyrot.WarningKind) error {
	w.record(user, "ClearWarned", string(kind))
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return err
	}
	delete(u.state.Warned, kind)
	return nil
}

func (w *world) forget(_ context.Context, user, id string) error {
	w.record(user, "Forget", id)
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil {
		return err
	}
	delete(u.state.Inactive, id)
	delete(u.state.Seen, id)
	delete(u.state.Unreported, id)
	if u.state.PreviousKeyID == id {
		u.state.PreviousKeyID = ""
	}
	return nil
}

func (w *world) current(_ context.Context, user string) (keyrot.Credentials, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	u, err := w.user(user)
	if err != nil || u.current.AccessKeyID == "" {
		return keyrot.Credentials{}, fmt.Errorf("secretsmanager: %q: %w", user, keyrot.ErrSecretNotFound)
	}
	return u.current, nil
}

// describeEvents renders events as "kind key" ("warning:kind key" for warnings).
func describeEvents(events []keyrot.Event, user string) []string {
	var out []string
	for _, e := range events {
		if user != "" && e.User != user {
			continue
		}
		kind := string(e.Kind)
		if e.Kind == keyrot.EventWarning {
			kind += ":" + string(e.Warning)
		}
		out = append(out, strings.TrimSpace(kind+" "+e.KeyID))
	}
	return out
}

// withCurrent sets up a user whose keyrot key (generation 1) was created and
// promoted at created, beside prev (if not "") created 5m earlier with status prevStatus.
func (w *world) withCurrent(user string, created time.Time, prev string, prevStatus keyrot.KeyStatus) {
	if prev != "" {
		w.addKey(user, prev, prevStatus, created.Add(-5*time.Minute))
	}
	w.addKey(user, curID, keyrot.KeyActive, created)
	w.setState(user, keyrot.SecretState{Exists: true, Generation: 1, Current: stored(curID, 1, created), CurrentSince: created, PreviousKeyID: prev, Timings: keyrot.DefaultPolicy().Timings()})
}

var errTransient = errors.New("secretsmanager: put secret value: InternalServiceError: try again")

func TestRotatorCreateStepOrder(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	r := w.rotator(nil)

	res, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	key := "AKIA000000000001"
	if got, want := w.callsOf("alice", "BeginCreate", "CreateAccessKey", "StorePending", "VerifyKey", "Promote", "ClearIntent", "DeleteAccessKey"),
		[]string{"BeginCreate gen=1", "CreateAccessKey " + key, "StorePending " + key, "VerifyKey " + key, "Promote " + key}; !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if got, want := describeSteps(res.Done), []string{"create gen=1 member=1"}; !slices.Equal(got, want) {
		t.Errorf("done = %q, want %q", got, want)
	}
	st := w.state("alice")
	if st.Current == nil || st.Current.KeyID != key {
		t.Fatalf("current = %+v, want key %s", st.Current, key)
	}
	if st.Intent != nil || st.Pending != nil {
		t.Errorf("intent %+v, pending %+v left after promotion", st.Intent, st.Pending)
	}
	if got, want := st.CurrentSince, now; !got.Equal(want) {
		t.Errorf("CurrentSince = %v, want %v", got, want)
	}
	if got, want := res.NextAt, now.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("NextAt = %v, want %v (the next rotation)", got, want)
	}
	events := w.notifier.Events()
	if got, want := describeEvents(events, ""), []string{"key_created " + key}; !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
	if got, want := events[0].User, "alice"; got != want {
		t.Errorf("event user = %q, want %q", got, want)
	}
	if got, want := events[0].NextAt, now.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("event NextAt = %v, want %v", got, want)
	}
}

// TestRotatorCurrentSinceIsWhenThePointerWasWritten: the previous key's
// deactivation counts from when its successor became current, which is
// when Promote wrote the pointer. A Promote slowed by retries returns after
// the time it was given (rounded up to the second, as stored); the pointer
// is then written again with the time it returned, so the overlap is never
// shortened. (Found by bench/chaos.sh: a previous key was deactivated less
// than deactivate_after after the pointer moved.)
func TestRotatorCurrentSinceIsWhenThePointerWasWritten(t *testing.T) {
	for _, tt := range []struct {
		name     string
		takes    time.Duration
		promotes int
	}{
		{"fast: within the second it is stored as", 500 * time.Millisecond, 1},
		{"slowed by retries", 3 * time.Second, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.addUser("alice", nil)
			w.withCurrent("alice", ago(6*time.Minute), "", "")
			w.clock.Set(now.Add(200 * time.Millisecond)) // stored rounded up: now + 1s
			promote := w.secrets.PromoteFn
			var returned time.Time
			w.secrets.PromoteFn = func(ctx context.Context, user string, pending keyrot.StoredKey, previous string, since time.Time, tm keyrot.Timings) error {
				if returned.IsZero() {
					w.clock.Advance(tt.takes) // the pointer is written at the end
					returned = w.clock.Now()
				}
				return promote(ctx, user, pending, previous, since, tm)
			}
			res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got := len(w.callsOf("alice", "Promote")); got != tt.promotes {
				t.Errorf("%d Promote calls, want %d", got, tt.promotes)
			}
			since := w.state("alice").CurrentSince
			stored := since.Truncate(time.Second)
			if !stored.Equal(since) {
				stored = stored.Add(time.Second)
			}
			if stored.Before(returned) {
				t.Fatalf("CurrentSince %s, stored as %s, is before the pointer was written at %s", since, stored, returned)
			}
			if got, want := res.NextAt, since.Add(2*time.Minute); !got.Equal(want) {
				t.Errorf("NextAt = %s, want the deactivation of %s at %s", got, curID, want)
			}
		})
	}
}

func TestRotatorCreateWritesIntentBeforeTheKey(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	var sawIntent bool
	create := w.keys.CreateAccessKeyFn
	w.keys.CreateAccessKeyFn = func(ctx context.Context, user string) (keyrot.Credentials, error) {
		st := w.state(user)
		sawIntent = st.Intent != nil && st.Intent.Generation == 1 && st.Intent.Member == 1 && st.Intent.At.Equal(now)
		return create(ctx, user)
	}
	if _, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if !sawIntent {
		t.Errorf("CreateAccessKey ran without the intent (generation 1, member 1, at %v) recorded", now)
	}
}

func TestRotatorStorePendingRetried(t *testing.T) {
	for _, failures := range []int{1, 3, 5} {
		t.Run(fmt.Sprintf("%d transient failures then success", failures), func(t *testing.T) {
			w := newWorld(t)
			w.addUser("alice", nil)
			store, n := w.secrets.StorePendingFn, 0
			w.secrets.StorePendingFn = func(ctx context.Context, in keyrot.Intent, c keyrot.Credentials) (keyrot.StoredKey, error) {
				if n++; n <= failures {
					w.record(c.UserName, "StorePending", c.AccessKeyID)
					return keyrot.StoredKey{}, errTransient
				}
				return store(ctx, in, c)
			}
			res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got, want := w.count("alice", "StorePending"), failures+1; got != want {
				t.Errorf("StorePending calls = %d, want %d", got, want)
			}
			if got, want := w.count("alice", "DeleteAccessKey"), 0; got != want {
				t.Errorf("DeleteAccessKey calls = %d, want %d", got, want)
			}
			if got, want := describeSteps(res.Done), []string{"create gen=1 member=1"}; !slices.Equal(got, want) {
				t.Errorf("done = %q, want %q", got, want)
			}
			if st := w.state("alice"); st.Current == nil {
				t.Errorf("no current key after the store succeeded")
			}
			backoff := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
			if got, want := w.clock.Waits(), backoff[:failures]; !slices.Equal(got, want) {
				t.Errorf("waits = %v, want %v", got, want)
			}
		})
	}
}

func TestRotatorStorePendingFailsEveryTime(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	w.secrets.StorePendingFn = func(_ context.Context, _ keyrot.Intent, c keyrot.Credentials) (keyrot.StoredKey, error) {
		w.record(c.UserName, "StorePending", c.AccessKeyID)
		return keyrot.StoredKey{}, errTransient
	}
	res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	key := "AKIA000000000001"
	if err == nil {
		t.Fatal("Reconcile: nil error, want the store failure")
	}
	if !errors.Is(err, errTransient) {
		t.Errorf("error %v does not wrap the store error", err)
	}
	if got, want := err.Error(), "store key "+key+" as pending"; !strings.Contains(got, want) {
		t.Errorf("error %q does not say %q", got, want)
	}
	if got, want := w.count("alice", "StorePending"), 6; got != want {
		t.Errorf("StorePending calls = %d, want %d", got, want)
	}
	// Nobody can use the unstored key: it is set aside at once and
	// recorded as keyrot's own, to be deleted on the normal timings.
	if got, want := w.callsOf("alice", "StorePending", "SetKeyStatus", "MarkInactive", "ClearIntent", "DeleteAccessKey"),
		[]string{"SetKeyStatus " + key + " Inactive", "MarkInactive " + key, "ClearIntent"}; len(got) < 6 || !slices.Equal(got[6:], want) {
		t.Errorf("calls = %q, want 6 stores then %q", got, want)
	}
	if got := w.iamKeys("alice"); len(got) != 1 || got[0].Status != keyrot.KeyInactive {
		t.Errorf("IAM keys = %+v, want the unstored key, inactive (deleted only after delete_after)", got)
	}
	st := w.state("alice")
	if st.Intent != nil {
		t.Errorf("intent %+v left behind", st.Intent)
	}
	if _, ok := st.Inactive[key]; !ok {
		t.Errorf("no inactive record of %s: it would not be known as keyrot's own", key)
	}
	// One failure the next pass may repair is a retry: no FAILED email.
	if got, want := describeEvents(w.notifier.Events(), ""), []string{"warning:orphan_key " + key}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if !strings.Contains(err.Error(), key) {
		t.Errorf("error %q does not name key %s", err, key)
	}
	if got := w.publisher.Published(); len(got) != 0 {
		t.Errorf("published %v, want nothing", got)
	}
	if res.Err == nil || len(res.Done) != 0 {
		t.Errorf("result Err = %v, Done = %q; want an error and nothing done", res.Err, describeSteps(res.Done))
	}
}

func TestRotatorStorePendingConflictSetsCreatedKeyAside(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	w.secrets.StorePendingFn = func(_ context.Context, _ keyrot.Intent, c keyrot.Credentials) (keyrot.StoredKey, error) {
		w.record(c.UserName, "StorePending", c.AccessKeyID)
		return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: put secret value: %w", keyrot.ErrConflict)
	}
	_, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	if !errors.Is(err, keyrot.ErrConflict) {
		t.Fatalf("Reconcile error = %v, want ErrConflict", err)
	}
	key := "AKIA000000000001"
	// A conflict is not retried, and the intent belongs to the other
	// writer; this run's key is deactivated and recorded, never deleted at once.
	if got, want := w.callsOf("alice", "StorePending", "SetKeyStatus", "MarkInactive", "DeleteAccessKey", "ClearIntent", "Promote"),
		[]string{"StorePending " + key, "SetKeyStatus " + key + " Inactive", "MarkInactive " + key}; !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	if got := w.iamKeys("alice"); len(got) != 1 || got[0].Status != keyrot.KeyInactive {
		t.Errorf("IAM keys = %+v, want this run's key, inactive", got)
	}
	if got, want := describeEvents(w.notifier.Events(), ""), []string{"warning:orphan_key " + key}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestRotatorVerifyWaitsForPropagation(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	verify := w.verifier.VerifyKeyFn
	w.verifier.VerifyKeyFn = func(ctx context.Context, c keyrot.Credentials) error {
		if w.clock.Now().Before(c.CreateDate.Add(10 * time.Second)) {
			w.record(c.UserName, "VerifyKey", c.AccessKeyID)
			return fmt.Errorf("sts: InvalidClientTokenId: %w", keyrot.ErrKeyRejected)
		}
		return verify(ctx, c)
	}
	res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if got, want := w.clock.Waits(), []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
	if got, want := w.count("alice", "VerifyKey"), 5; got != want {
		t.Errorf("VerifyKey calls = %d, want %d", got, want)
	}
	st := w.state("alice")
	if st.Current == nil || st.Current.KeyID != "AKIA000000000001" {
		t.Fatalf("current = %+v, want the new key", st.Current)
	}
	if got, want := st.CurrentSince, now.Add(15*time.Second); !got.Equal(want) {
		t.Errorf("CurrentSince = %v, want %v (when verification succeeded)", got, want)
	}
	if got, want := describeSteps(res.Done), []string{"create gen=1 member=1"}; !slices.Equal(got, want) {
		t.Errorf("done = %q, want %q", got, want)
	}
}

func TestRotatorVerifyNeverAccepts(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	verify := w.verifier.VerifyKeyFn
	w.verifier.VerifyKeyFn = func(_ context.Context, c keyrot.Credentials) error {
		w.record(c.UserName, "VerifyKey", c.AccessKeyID)
		return fmt.Errorf("sts: InvalidClientTokenId: %w", keyrot.ErrKeyRejected)
	}
	r := w.rotator(nil)
	_, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	if !errors.Is(err, keyrot.ErrKeyRejected) {
		t.Fatalf("Reconcile error = %v, want ErrKeyRejected", err)
	}
	key := "AKIA000000000001"
	if got, want := err.Error(), "left pending"; !strings.Contains(got, want) {
		t.Errorf("error %q does not say %q", got, want)
	}
	if got := w.clock.Now().Sub(now); got < keyrot.DefaultPolicy().VerifyTimeout {
		t.Errorf("gave up after %v, want at least the verify timeout %v", got, keyrot.DefaultPolicy().VerifyTimeout)
	}
	if got, want := w.iamKeyIDs("alice"), []string{key}; !slices.Equal(got, want) {
		t.Errorf("IAM keys = %q, want %q (kept: it is stored)", got, want)
	}
	st := w.state("alice")
	if st.Current != nil || st.Intent == nil || st.Pending == nil || st.Pending.KeyID != key {
		t.Errorf("state = current %+v, intent %+v, pending %+v; want the key left pending", st.Current, st.Intent, st.Pending)
	}
	if got := w.callsOf("alice", "Promote", "ClearIntent", "DeleteAccessKey"); len(got) != 0 {
		t.Errorf("calls = %q, want no promote, clear or delete", got)
	}
	if got := describeEvents(w.notifier.Events(), ""); len(got) != 0 {
		t.Errorf("events = %q, want none: one failed pass is a retry", got)
	}

	// Once AWS accepts the key, the next pass promotes it.
	w.verifier.VerifyKeyFn = verify
	res, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	if err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	if got, want := describeSteps(res.Done), []string{"promote " + key}; !slices.Equal(got, want) {
		t.Errorf("done = %q, want %q", got, want)
	}
	if st := w.state("alice"); st.Current == nil || st.Current.KeyID != key {
		t.Errorf("current = %+v, want %s", st.Current, key)
	}
	if got, want := w.count("alice", "CreateAccessKey"), 1; got != want {
		t.Errorf("CreateAccessKey calls = %d, want %d", got, want)
	}
}

func TestRotatorDeactivate(t *testing.T) {
	tests := []struct {
		name       string
		lastUsed   time.Time
		wantEvents []string
	}{
		{"previous key used after its successor became current: key_in_use", ago(30 * time.Second), []string{"warning:key_in_use " + prevID, "key_deactivated " + prevID}},
		{"previous key last used before its successor: no warning", ago(3 * time.Minute), []string{"key_deactivated " + prevID}},
		{"previous key never used: no warning", time.Time{}, []string{"key_deactivated " + prevID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.addUser("alice", nil)
			w.withCurrent("alice", ago(2*time.Minute), prevID, keyrot.KeyActive)
			w.lastUsed[prevID] = tt.lastUsed
			res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got, want := describeSteps(res.Done), []string{"deactivate " + prevID}; !slices.Equal(got, want) {
				t.Errorf("done = %q, want %q", got, want)
			}
			if got, want := w.callsOf("alice", "KeyLastUsed", "MarkDeactivating", "SetKeyStatus", "Reported"),
				[]string{"KeyLastUsed " + prevID, "MarkDeactivating " + prevID, "SetKeyStatus " + prevID + " Inactive", "Reported " + prevID}; !slices.Equal(got, want) {
				t.Errorf("calls = %q, want %q", got, want)
			}
			if got, want := w.state("alice").Inactive[prevID], now; !got.Equal(want) {
				t.Errorf("inactive record = %v, want %v", got, want)
			}
			events := w.notifier.Events()
			if got, want := describeEvents(events, ""), tt.wantEvents; !slices.Equal(got, want) {
				t.Fatalf("events = %q, want %q", got, want)
			}
			last := events[len(events)-1]
			if got, want := last.NextAt, now.Add(time.Minute); !got.Equal(want) {
				t.Errorf("deactivated NextAt = %v, want %v (deletion)", got, want)
			}
			if got, want := last.LastUsed, tt.lastUsed; !got.Equal(want) {
				t.Errorf("deactivated LastUsed = %v, want %v", got, want)
			}
			if got, want := res.NextAt, now.Add(time.Minute); !got.Equal(want) {
				t.Errorf("result NextAt = %v, want %v (deletion)", got, want)
			}
		})
	}
}

// TestRotatorDeletionCountsFromTheDeactivation: setting a key Inactive can
// take long (the SDK retrying through throttling). Its deletion counts from
// when the call returned, never from when the step began; if the record of
// that moment is never written (here a crash right after the call), the record
// written before the call, the end of the step, holds until a pass finds
// the key Inactive and records its own time. (Found by bench/chaos.sh: a
// deactivation slowed by retries let a key be deleted 1.6 s after it
// became inactive, with delete_after 5 s.)
func TestRotatorDeletionCountsFromTheDeactivation(t *testing.T) {
	const slow = 40 * time.Second
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("record after the call lost: %v", lost), func(t *testing.T) {
			w := newWorld(t)
			w.addUser("alice", nil)
			w.withCurrent("alice", ago(2*time.Minute), prevID, keyrot.KeyActive)
			setStatus := w.keys.SetKeyStatusFn
			w.keys.SetKeyStatusFn = func(ctx context.Context, user, id string, status keyrot.KeyStatus) error {
				w.clock.Advance(slow) // the call takes effect at its very end
				return setStatus(ctx, user, id, status)
			}
			crash := lost
			rot := w.rotator(func(c *keyrot.RotatorConfig) {
				c.StepHook = func(_ context.Context, point string) error {
					if crash && point == "after-set-inactive" {
						crash = false
						return errors.New("killed")
					}
					return nil
				}
			})
			if _, err := rot.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); (err != nil) != lost {
				t.Fatalf("Reconcile: %v", err)
			}
			inactiveAt := now.Add(slow)
			recorded := w.state("alice").Inactive[prevID]
			if recorded.Before(inactiveAt) {
				t.Fatalf("deletion counts from %s, before the key became inactive at %s", recorded, inactiveAt)
			}
			if !lost && !recorded.Equal(inactiveAt) {
				t.Errorf("inactive record = %s, want %s", recorded, inactiveAt)
			}
			if lost {
				// A later pass finds the key Inactive under the record
				// written before the call, and records its own time.
				w.clock.Set(inactiveAt.Add(10 * time.Second))
				res, err := rot.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
				if err != nil {
					t.Fatalf("second Reconcile: %v", err)
				}
				if got, want := describeSteps(res.Done), []string{"report " + prevID, "record_inactive " + prevID}; !slices.Equal(got, want) {
					t.Fatalf("second pass: done %q, want %q", got, want)
				}
				inactiveAt = w.clock.Now()
			}
			w.clock.Set(inactiveAt.Add(time.Minute - time.Second))
			res, err := rot.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
			if err != nil || len(res.Done) != 0 {
				t.Fatalf("a second before delete_after: done %q (%v), want nothing", describeSteps(res.Done), err)
			}
			w.clock.Set(inactiveAt.Add(time.Minute))
			res, err = rot.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
			if got, want := describeSteps(res.Done), []string{"delete " + prevID}; err != nil || !slices.Equal(got, want) {
				t.Fatalf("at delete_after: done %q (%v), want %q", got, err, want)
			}
		})
	}
}

func TestRotatorDeleteThenCreateInOnePass(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	w.withCurrent("alice", ago(5*time.Minute), prevID, keyrot.KeyInactive)
	w.setState("alice", withInactive(w.state("alice"), prevID, ago(2*time.Minute)))
	res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if got, want := describeSteps(res.Done), []string{"delete " + prevID, "create gen=2 member=2"}; !slices.Equal(got, want) {
		t.Errorf("done = %q, want %q", got, want)
	}
	if got, want := w.iamKeyIDs("alice"), []string{curID, "AKIA000000000001"}; !slices.Equal(got, want) {
		t.Errorf("IAM keys = %q, want %q", got, want)
	}
	st := w.state("alice")
	if got, want := st.PreviousKeyID, curID; got != want {
		t.Errorf("PreviousKeyID = %q, want %q", got, want)
	}
	if _, ok := st.Inactive[prevID]; ok {
		t.Errorf("record of deleted key %s kept", prevID)
	}
	if got, want := describeEvents(w.notifier.Events(), ""), []string{"key_deleted " + prevID, "key_created AKIA000000000001"}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestRotatorContextCancelled(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the world and returns a hook that cancels mid-pass
		// (nil: cancel before the pass).
		setup     func(w *world, cancel context.CancelFunc)
		wantDone  []string
		wantCalls []string // mutating calls made
	}{
		{
			name:  "cancelled before the pass: nothing observed or started",
			setup: func(w *world, cancel context.CancelFunc) { cancel() },
		},
		{
			name: "cancelled while observing: the planned create is not started",
			setup: func(w *world, cancel context.CancelFunc) {
				list := w.keys.ListAccessKeysFn
				w.keys.ListAccessKeysFn = func(ctx context.Context, user string) ([]keyrot.AccessKey, error) {
					cancel()
					return list(ctx, user)
				}
			},
		},
		{
			name: "cancelled during a step: it runs to its end, the next one is not started",
			setup: func(w *world, cancel context.CancelFunc) {
				w.withCurrent("alice", ago(time.Minute), "", "")
				s := withInactive(withInactive(w.state("alice"), goneID, ago(time.Hour)), gone2ID, ago(time.Hour))
				w.setState("alice", s)
				forget := w.secrets.ForgetFn
				w.secrets.ForgetFn = func(ctx context.Context, user, id string) error {
					cancel()
					if ctx.Err() != nil {
						return fmt.Errorf("step ran on the cancelled context: %w", ctx.Err())
					}
					return forget(ctx, user, id)
				}
			},
			wantDone:  []string{"forget " + goneID},
			wantCalls: []string{"Forget " + goneID},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.addUser("alice", nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tt.setup(w, cancel)
			res, err := w.rotator(nil).Reconcile(ctx, "alice", keyrot.RunOptions{})
			if err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if got, want := describeSteps(res.Done), tt.wantDone; !slices.Equal(got, want) {
				t.Errorf("done = %q, want %q", got, want)
			}
			if got, want := w.callsOf("alice", "BeginCreate", "CreateAccessKey", "Forget", "MarkInactive", "SetKeyStatus", "DeleteAccessKey"), tt.wantCalls; !slices.Equal(got, want) {
				t.Errorf("calls = %q, want %q", got, want)
			}
			if got := describeEvents(w.notifier.Events(), ""); slices.Contains(got, "rotation_failed") {
				t.Errorf("events = %q: stopping is not a failure", got)
			}
		})
	}
}

func TestRotatorReconcileAllIsolatesFailures(t *testing.T) {
	w := newWorld(t)
	var names []string
	for i := range 20 {
		name := fmt.Sprintf("user%02d", i)
		names = append(names, name)
		w.addUser(name, nil)
	}
	failing := map[string]error{
		"user00": errors.New("iam: list access keys: Throttling: rate exceeded"),
		"user05": errors.New("secretsmanager: create secret: InternalServiceError"),
		"user10": errors.New("iam: list access keys: Throttling: rate exceeded"),
		"user15": errors.New("secretsmanager: create secret: InternalServiceError"),
	}
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	list, begin := w.keys.ListAccessKeysFn, w.secrets.BeginCreateFn
	w.keys.ListAccessKeysFn = func(ctx context.Context, user string) ([]keyrot.AccessKey, error) {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight--
			mu.Unlock()
		}()
		if err := failing[user]; err != nil && strings.Contains(err.Error(), "list") {
			return nil, err
		}
		return list(ctx, user)
	}
	w.secrets.BeginCreateFn = func(ctx context.Context, user keyrot.User, in keyrot.Intent) error {
		if err := failing[user.Name]; err != nil && strings.Contains(err.Error(), "create") {
			return err
		}
		return begin(ctx, user, in)
	}
	r := w.rotator(func(c *keyrot.RotatorConfig) { c.Concurrency = 4 })

	sum, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{})
	if err != nil {
		t.Fatalf("ReconcileAll: %v", err)
	}
	if got, want := sum.Users, 20; got != want {
		t.Errorf("Users = %d, want %d", got, want)
	}
	if got, want := sum.Failed, 4; got != want {
		t.Errorf("Failed = %d, want %d", got, want)
	}
	if got, want := sum.Created, 16; got != want {
		t.Errorf("Created = %d, want %d", got, want)
	}
	if maxInFlight > 4 {
		t.Errorf("%d users listed at once, want at most 4", maxInFlight)
	}
	for i, res := range sum.Results {
		if got, want := res.User, names[i]; got != want {
			t.Errorf("result %d is for %q, want %q", i, got, want)
		}
		if wantErr := failing[res.User]; wantErr != nil {
			if !errors.Is(res.Err, wantErr) {
				t.Errorf("%s: Err = %v, want %v", res.User, res.Err, wantErr)
			}
			if got := w.state(res.User).Current; got != nil {
				t.Errorf("%s: current = %+v after a failure", res.User, got)
			}
			if got := describeEvents(w.notifier.Events(), res.User); len(got) != 0 {
				t.Errorf("%s: events = %q, want none after one failed pass", res.User, got)
			}
			continue
		}
		if res.Err != nil {
			t.Errorf("%s: Err = %v", res.User, res.Err)
		}
		if got := w.state(res.User).Current; got == nil {
			t.Errorf("%s: not rotated", res.User)
		}
	}
	for _, user := range []string{"user05", "user15"} {
		if got := w.count(user, "CreateAccessKey"); got != 0 {
			t.Errorf("%s: CreateAccessKey called %d times although the intent could not be recorded", user, got)
		}
	}
}

func TestRotatorExemptUsers(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	w.addUser("bob", nil)
	w.addUser("carol", map[string]string{"keyrot:rotate": "yes"})
	w.addUser("dave", map[string]string{"keyrot:rotate": "yes", "keyrot:exempt": "true"})
	w.addUser("erin", map[string]string{"keyrot:rotate": "yes"})
	w.addUser("frank", map[string]string{"team": "data"})
	w.groups["breakglass"] = []string{"bob", "carol"}
	r := w.rotator(func(c *keyrot.RotatorConfig) {
		c.Users = keyrot.UserSelector{Names: []string{"alice", "bob"}, Tag: "keyrot:rotate=yes", ExemptGroup: "breakglass", ExemptTag: "keyrot:exempt"}
	})

	sum, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{})
	if err != nil {
		t.Fatalf("ReconcileAll: %v", err)
	}
	type outcome struct {
		user, exempt string
		rotated      bool
	}
	var got []outcome
	for _, res := range sum.Results {
		got = append(got, outcome{res.User, res.ExemptReason, len(res.Done) > 0})
	}
	want := []outcome{
		{"alice", "", true},
		{"bob", "member of group breakglass", false},
		{"carol", "member of group breakglass", false},
		{"dave", "tagged keyrot:exempt", false},
		{"erin", "", true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("results = %+v, want %+v", got, want)
	}
	if got, want := sum.Exempt, 3; got != want {
		t.Errorf("Exempt = %d, want %d", got, want)
	}
	for _, user := range []string{"bob", "carol", "dave", "frank"} {
		if got := w.callsOf(user, "ListAccessKeys", "Load", "BeginCreate", "CreateAccessKey"); len(got) != 0 {
			t.Errorf("%s: calls = %q, want none", user, got)
		}
	}
}

func TestRotatorPublishesNewCredentials(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	if _, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	pub := w.publisher.Published()
	if got, want := len(pub), 1; got != want {
		t.Fatalf("published %d credentials, want %d", got, want)
	}
	c := pub[0]
	if got, want := c.AccessKeyID, "AKIA000000000001"; got != want {
		t.Errorf("AccessKeyID = %q, want %q", got, want)
	}
	if got, want := c.SecretAccessKey, w.issuedSecrets()[0]; got != want {
		t.Errorf("SecretAccessKey is not the one IAM issued")
	}
	if got, want := c.UserName, "alice"; got != want {
		t.Errorf("UserName = %q, want %q", got, want)
	}
	if got, want := c.Generation, 1; got != want {
		t.Errorf("Generation = %d, want %d", got, want)
	}
	if got, want := c.CurrentSince, now; !got.Equal(want) {
		t.Errorf("CurrentSince = %v, want %v", got, want)
	}
	if got, want := c.Timings, keyrot.DefaultPolicy().Timings(); got != want {
		t.Errorf("Timings = %+v, want the policy's %+v", got, want)
	}
	// The rotation is due in 5m; the daemon may start a step a second late.
	if got, want := c.NextRotation, now.Add(5*time.Minute+time.Second); !got.Equal(want) {
		t.Errorf("NextRotation = %v, want %v", got, want)
	}
	if got, want := c.Expiration, now.Add(6*time.Minute+time.Second); !got.Equal(want) {
		t.Errorf("Expiration = %v, want %v (half-way through the overlap)", got, want)
	}
}

// TestRotatorNeverRevealsSecrets runs users through every path (a full
// lifecycle, a failed store, a key that never verifies, a key in use) with
// debug logging, and looks for any secret access key in events, logs,
// errors and results.
func TestRotatorNeverRevealsSecrets(t *testing.T) {
	w := newWorld(t)
	for _, name := range []string{"alice", "bob", "carol"} {
		w.addUser(name, map[string]string{"keyrot:owner": name + "@example.com"})
	}
	w.addKey("alice", foreignID, keyrot.KeyActive, ago(100*24*time.Hour))
	store, verify := w.secrets.StorePendingFn, w.verifier.VerifyKeyFn
	var stores, verifies atomic.Int32
	w.secrets.StorePendingFn = func(ctx context.Context, in keyrot.Intent, c keyrot.Credentials) (keyrot.StoredKey, error) {
		if n := stores.Add(1); c.UserName == "bob" || n%3 == 1 {
			// An adapter error that echoes the request must not leak either;
			// here the mock only says which key, as a real error would.
			return keyrot.StoredKey{}, fmt.Errorf("secretsmanager: put secret value for key %s: %w", c.AccessKeyID, errTransient)
		}
		return store(ctx, in, c)
	}
	w.verifier.VerifyKeyFn = func(ctx context.Context, c keyrot.Credentials) error {
		if n := verifies.Add(1); c.UserName == "carol" && n < 40 || n%4 == 1 {
			return fmt.Errorf("sts: InvalidClientTokenId for %s: %w", c.AccessKeyID, keyrot.ErrKeyRejected)
		}
		return verify(ctx, c)
	}
	w.keys.KeyLastUsedFn = func(context.Context, string) (time.Time, error) { return w.clock.Now(), nil }

	r := w.rotator(nil)
	var texts []string
	for range 15 {
		sum, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{})
		if err != nil {
			t.Fatalf("ReconcileAll: %v", err)
		}
		for _, res := range sum.Results {
			texts = append(texts, fmt.Sprintf("%v", res), fmt.Sprintf("%+v", res), fmt.Sprintf("%#v", res))
			if res.Err != nil {
				texts = append(texts, res.Err.Error())
			}
		}
		w.clock.Advance(time.Minute)
	}
	events := w.notifier.Events()
	for _, e := range events {
		texts = append(texts, fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
	}
	texts = append(texts, w.logs.String())

	// The run must have gone through the paths that handle keys.
	kinds := describeEvents(events, "")
	for _, want := range []string{"key_created", "key_deactivated", "key_deleted", "rotation_failed", "warning:key_in_use"} {
		if !slices.ContainsFunc(kinds, func(k string) bool { return strings.HasPrefix(k, want) }) {
			t.Errorf("no %s event in %q: the run did not exercise that path", want, kinds)
		}
	}
	secrets := w.issuedSecrets()
	if len(secrets) < 5 {
		t.Fatalf("only %d keys issued", len(secrets))
	}
	for _, secret := range secrets {
		for _, text := range texts {
			if strings.Contains(text, secret) {
				t.Fatalf("secret access key %q found in:\n%s", secret, text)
			}
		}
	}
	for _, text := range texts {
		if strings.Contains(text, "SECRETxEXAMPLEKEY") {
			t.Fatalf("part of a secret access key found in:\n%s", text)
		}
	}
}

func TestSchedulerWakesAtNextAt(t *testing.T) {
	w := newWorld(t)
	w.clock.SetAutoAdvance(false)
	w.addUser("alice", nil)
	w.withCurrent("alice", ago(time.Minute), "", "") // rotation due at now+4m
	w.addUser("bob", nil)
	w.addKey("bob", "AKIABOB", keyrot.KeyActive, ago(30*time.Second)) // rotation due at now+4m30s
	w.setState("bob", keyrot.SecretState{Exists: true, Generation: 1, Current: stored("AKIABOB", 1, ago(30*time.Second)), CurrentSince: ago(30 * time.Second)})
	r := w.rotator(nil)

	passes := make(chan keyrot.Summary, 16)
	s := &keyrot.Scheduler{Rotator: r, Clock: w.clock, Resync: time.Hour, OnPass: func(sum keyrot.Summary) { passes <- sum }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	// guard bounds a wait for the scheduler, so a broken scheduler fails the
	// test instead of hanging it; nothing here sleeps.
	guard, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	nextPass := func() keyrot.Summary {
		t.Helper()
		select {
		case sum := <-passes:
			return sum
		case <-guard.Done():
			t.Fatal("no pass")
			return keyrot.Summary{}
		}
	}
	waitTimer := func(want time.Time) {
		t.Helper()
		if err := w.clock.BlockUntil(guard, 1); err != nil {
			t.Fatal(err)
		}
		if got := w.clock.Timers(); len(got) != 1 || !got[0].Equal(want) {
			t.Fatalf("scheduler waits until %v, want exactly %v", got, want)
		}
	}

	if got, want := nextPass().Users, 2; got != want {
		t.Fatalf("first pass covered %d users, want %d", got, want)
	}
	waitTimer(now.Add(4 * time.Minute))

	w.clock.Advance(4*time.Minute - time.Second)
	select {
	case sum := <-passes:
		t.Fatalf("pass one second early: %+v", sum)
	default:
	}
	if got := len(w.clock.Timers()); got != 1 {
		t.Fatalf("%d timers pending one second early, want the scheduler still waiting", got)
	}

	w.clock.Advance(time.Second)
	sum := nextPass()
	if got, want := len(sum.Results), 1; got != want || sum.Results[0].User != "alice" {
		t.Fatalf("pass at alice's NextAt covered %+v, want only alice", sum.Results)
	}
	if got, want := sum.Created, 1; got != want {
		t.Errorf("Created = %d, want %d", got, want)
	}
	if got, want := w.iamKeys("alice")[1].CreateDate, now.Add(4*time.Minute); !got.Equal(want) {
		t.Errorf("new key created at %v, want %v", got, want)
	}
	waitTimer(now.Add(4*time.Minute + 30*time.Second)) // bob's turn, before alice's deactivation at +6m

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-guard.Done():
		t.Fatal("scheduler did not stop when its context was cancelled")
	}
	select {
	case sum := <-passes:
		t.Errorf("pass after cancel: %+v", sum)
	default:
	}
}

// TestRotatorStaleSecretChoosesLeastRecentlyUsedKey: the secret names a key
// IAM no longer has and the user has two active keys. keyrot must deactivate
// the one not in use, which needs GetAccessKeyLastUsed for both keys; the
// rotator only asks when the secret has no current key at all.
func TestRotatorStaleSecretChoosesLeastRecentlyUsedKey(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	w.addKey("alice", prevID, keyrot.KeyActive, ago(10*time.Minute))
	w.addKey("alice", foreignID, keyrot.KeyActive, ago(5*time.Minute))
	w.setState("alice", keyrot.SecretState{Exists: true, Generation: 2, Current: stored(goneID, 2, ago(5*time.Minute)), CurrentSince: ago(5 * time.Minute), PreviousKeyID: prevID})
	w.lastUsed[prevID] = ago(time.Second) // in use by every consumer
	// foreignID was never used.

	res, err := w.rotator(nil).Reconcile(context.Background(), "alice", keyrot.RunOptions{DryRun: true})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if got, want := describeSteps(res.Planned), []string{"deactivate " + foreignID}; !slices.Equal(got, want) {
		t.Errorf("planned = %q, want %q (the unused key, not the one in use)", got, want)
	}
}

// TestRotatorUnprovableKeyIsNeverDeleted: when the store fails for good and
// the unstored key can be neither deactivated nor recorded, keyrot cannot
// later prove the key is its own. The intent stays until orphan_grace; then
// the key is treated as any key keyrot did not create: under report, left
// alone and reported, never deleted.
func TestRotatorUnprovableKeyIsNeverDeleted(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	store, setStatus, mark := w.secrets.StorePendingFn, w.keys.SetKeyStatusFn, w.secrets.MarkInactiveFn
	w.secrets.StorePendingFn = func(context.Context, keyrot.Intent, keyrot.Credentials) (keyrot.StoredKey, error) {
		return keyrot.StoredKey{}, errTransient
	}
	w.keys.SetKeyStatusFn = func(context.Context, string, string, keyrot.KeyStatus) error {
		return errors.New("iam: update access key: ServiceFailure")
	}
	w.secrets.MarkInactiveFn = func(context.Context, string, string, time.Time) error { return errTransient }
	r := w.rotator(func(c *keyrot.RotatorConfig) { c.Policy.UnmanagedKeys = keyrot.ReportUnmanaged })
	if _, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err == nil {
		t.Fatal("Reconcile: nil error, want the store failure")
	}
	if st := w.state("alice"); st.Intent == nil {
		t.Errorf("intent cleared before orphan_grace although the unstored key %s is still in IAM", w.iamKeyIDs("alice"))
	}

	w.secrets.StorePendingFn, w.keys.SetKeyStatusFn, w.secrets.MarkInactiveFn = store, setStatus, mark
	for range 3 {
		w.clock.Advance(keyrot.DefaultPolicy().OrphanGrace)
		if _, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
	}
	if got := w.callsOf("alice", "DeleteAccessKey", "SetKeyStatus"); len(got) != 0 {
		t.Errorf("calls = %q: a key keyrot cannot prove is its own was touched under report", got)
	}
	if got := w.iamKeyIDs("alice"); !slices.Contains(got, "AKIA000000000001") {
		t.Errorf("IAM keys = %q: the unprovable key is gone", got)
	}
	if got := describeEvents(w.notifier.Events(), "alice"); !slices.Contains(got, "warning:unmanaged_key AKIA000000000001") {
		t.Errorf("events = %q, want the key reported as unmanaged", got)
	}
}

// TestRotatorAmbiguousCreateThenAdminKey: CreateAccessKey fails with an
// error that does not say IAM refused (a timeout, a reset connection), and
// a person creates a key for the user before orphan_grace is over. keyrot
// cannot tell that key from one it may have created, so it keeps it: under
// report untouched, under adopt deactivated only on the normal timings
// (never before deactivate_after from when keyrot first saw it), deleted
// only after delete_after more.
func TestRotatorAmbiguousCreateThenAdminKey(t *testing.T) {
	for _, policy := range []keyrot.UnmanagedKeys{keyrot.ReportUnmanaged, keyrot.AdoptUnmanaged} {
		t.Run(string(policy), func(t *testing.T) {
			w := newWorld(t)
			w.addUser("alice", nil)
			w.withCurrent("alice", ago(6*time.Minute), "", "")
			create := w.keys.CreateAccessKeyFn
			w.keys.CreateAccessKeyFn = func(ctx context.Context, user string) (keyrot.Credentials, error) {
				w.keys.CreateAccessKeyFn = create
				return keyrot.Credentials{}, errors.New("iam: create access key: read tcp: connection reset by peer")
			}
			r := w.rotator(func(c *keyrot.RotatorConfig) { c.Policy.UnmanagedKeys = policy })
			if _, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err == nil {
				t.Fatal("Reconcile: nil error, want the create failure")
			}
			if st := w.state("alice"); st.Intent == nil {
				t.Fatal("intent cleared after an ambiguous CreateAccessKey failure")
			}
			w.clock.Advance(time.Minute)
			const admin = "AKIAADMINCREATED0001"
			w.addKey("alice", admin, keyrot.KeyActive, w.clock.Now().Truncate(time.Second))
			w.clock.Advance(keyrot.DefaultPolicy().OrphanGrace)
			seen := w.clock.Now()
			policyT := keyrot.DefaultPolicy()
			var deactivatedAt, deletedAt time.Time
			for range 40 {
				if _, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err != nil {
					t.Fatalf("Reconcile: %v", err)
				}
				ids := w.iamKeyIDs("alice")
				for _, k := range w.iamKeys("alice") {
					if k.ID == admin && k.Status == keyrot.KeyInactive && deactivatedAt.IsZero() {
						deactivatedAt = w.clock.Now()
					}
				}
				if !slices.Contains(ids, admin) && deletedAt.IsZero() {
					deletedAt = w.clock.Now()
				}
				w.clock.Advance(15 * time.Second)
			}
			if policy == keyrot.ReportUnmanaged {
				if !deactivatedAt.IsZero() || !deletedAt.IsZero() {
					t.Errorf("admin's key touched under report (deactivated %v, deleted %v)", deactivatedAt, deletedAt)
				}
				return
			}
			if deactivatedAt.Before(seen.Add(policyT.DeactivateAfter)) {
				t.Errorf("admin's key deactivated at %v, before deactivate_after from when it was first seen (%v)", deactivatedAt, seen)
			}
			if deletedAt.IsZero() || deletedAt.Sub(deactivatedAt) < policyT.DeleteAfter {
				t.Errorf("admin's key deleted at %v, deactivated at %v: want delete_after between", deletedAt, deactivatedAt)
			}
			events := describeEvents(w.notifier.Events(), "alice")
			if !slices.Contains(events, "warning:unmanaged_key "+admin) {
				t.Errorf("events = %q: the admin was not told their key is adopted", events)
			}
		})
	}
}

func TestMockClock(t *testing.T) {
	t.Run("Advance fires the timers it reaches, and no other", func(t *testing.T) {
		c := mock.NewClock(now)
		late, early, zero := c.After(2*time.Second), c.After(time.Second), c.After(0)
		if got, want := (<-zero), now; !got.Equal(want) {
			t.Errorf("After(0) sent %v, want %v at once", got, want)
		}
		c.Advance(time.Second - time.Nanosecond)
		select {
		case <-early:
			t.Fatal("fired before its deadline")
		default:
		}
		c.Advance(time.Nanosecond)
		if got, want := (<-early), now.Add(time.Second); !got.Equal(want) {
			t.Errorf("fired with %v, want %v", got, want)
		}
		if got, want := c.Timers(), []time.Time{now.Add(2 * time.Second)}; !slices.Equal(got, want) {
			t.Errorf("Timers() = %v, want %v", got, want)
		}
		c.Set(now.Add(time.Hour))
		if got, want := (<-late), now.Add(time.Hour); !got.Equal(want) {
			t.Errorf("fired with %v, want %v", got, want)
		}
	})
	t.Run("auto-advance moves the clock by each wait and fires at once", func(t *testing.T) {
		c := mock.NewClock(now)
		pending := c.After(3 * time.Second)
		c.SetAutoAdvance(true)
		if got, want := (<-c.After(5 * time.Second)), now.Add(5*time.Second); !got.Equal(want) {
			t.Errorf("After(5s) sent %v, want %v", got, want)
		}
		if got, want := (<-pending), now.Add(5*time.Second); !got.Equal(want) {
			t.Errorf("the timer it passed sent %v, want %v", got, want)
		}
		if got, want := c.Waits(), []time.Duration{3 * time.Second, 5 * time.Second}; !slices.Equal(got, want) {
			t.Errorf("Waits() = %v, want %v", got, want)
		}
	})
	t.Run("BlockUntil waits for a waiter, or gives up with its context", func(t *testing.T) {
		c := mock.NewClock(now)
		go c.After(time.Minute)
		guard, stop := context.WithTimeout(context.Background(), 30*time.Second)
		defer stop()
		if err := c.BlockUntil(guard, 1); err != nil {
			t.Fatalf("BlockUntil(1): %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.BlockUntil(ctx, 2); !errors.Is(err, context.Canceled) {
			t.Errorf("BlockUntil(2) on a cancelled context = %v, want context.Canceled", err)
		}
	})
}

// TestPassForDueUsersListsNobodyElse: the scheduler's pass for the users
// due now must not list and fetch every IAM user the tag might select.
func TestPassForDueUsersListsNobodyElse(t *testing.T) {
	w := newWorld(t)
	w.addUser("carol", map[string]string{"keyrot:rotate": "yes"})
	w.addUser("erin", map[string]string{"keyrot:rotate": "yes"})
	w.addUser("frank", map[string]string{"team": "data"})
	r := w.rotator(func(c *keyrot.RotatorConfig) {
		c.Users = keyrot.UserSelector{Tag: "keyrot:rotate=yes"}
	})
	if _, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{Users: []string{"carol"}}); err != nil {
		t.Fatalf("ReconcileAll(carol): %v", err)
	}
	if calls := w.callsOf("", "ListUsers"); len(calls) != 0 {
		t.Errorf("a pass for one user listed the users: %v", calls)
	}
	if calls := w.callsOf("erin"); len(calls) != 0 {
		t.Errorf("a pass for carol touched erin: %v", calls)
	}
	// A user the tag does not select is refused, not rotated.
	if _, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{Users: []string{"frank"}}); err == nil || !strings.Contains(err.Error(), "not managed") {
		t.Fatalf("ReconcileAll(frank) = %v, want not managed", err)
	}
}

// TestSchedulerDueUserNotHeldBackBySlowResync: while a full pass is stuck
// (a large fleet paced by the IAM rate limit), a user whose step falls due is
// still served on time.
func TestSchedulerDueUserNotHeldBackBySlowResync(t *testing.T) {
	w := newWorld(t)
	w.clock.SetAutoAdvance(false)
	w.addUser("alice", map[string]string{"keyrot:rotate": "yes"})
	w.withCurrent("alice", ago(time.Minute), "", "") // rotation due at now+4m
	gate := make(chan struct{})
	listUsers := w.keys.ListUsersFn
	calls := 0
	w.keys.ListUsersFn = func(ctx context.Context, prefix string) ([]keyrot.User, error) {
		if calls++; calls > 1 { // the second full pass hangs until released
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return listUsers(ctx, prefix)
	}
	r := w.rotator(func(c *keyrot.RotatorConfig) { c.Users = keyrot.UserSelector{Tag: "keyrot:rotate=yes"} })
	passes := make(chan keyrot.Summary, 16)
	s := &keyrot.Scheduler{Rotator: r, Clock: w.clock, Resync: 2 * time.Minute, OnPass: func(sum keyrot.Summary) { passes <- sum }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	guard, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	select {
	case <-passes: // the first full pass
	case <-guard.Done():
		t.Fatal("no first pass")
	}
	if err := w.clock.BlockUntil(guard, 1); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(2 * time.Minute) // the second full pass starts and hangs
	if err := w.clock.BlockUntil(guard, 1); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(2 * time.Minute) // alice is due
	select {
	case sum := <-passes:
		if len(sum.Results) != 1 || sum.Results[0].User != "alice" || sum.Created != 1 {
			t.Fatalf("pass while the resync hangs = %+v, want alice rotated", sum.Results)
		}
	case <-guard.Done():
		t.Fatal("alice's step waited for the hanging resync")
	}
	close(gate)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// apiError is an AWS error as the SDK returns it (smithy.APIError's ErrorCode).
type apiError struct{ code string }

func (e apiError) Error() string     { return "api error " + e.code + ": try again" }
func (e apiError) ErrorCode() string { return e.code }

// TestRotatorFailureIncident: a failure the next pass repairs is a retry,
// only logged; FAILED goes out once per incident, after three failed passes
// in a row (or ten minutes), RECOVERED once when a pass works again; a
// restart neither re-sends nor forgets them; throttling never opens one.
func TestRotatorFailureIncident(t *testing.T) {
	setup := func(t *testing.T, failWith error) (*world, *keyrot.Rotator, *bool) {
		w := newWorld(t)
		w.addUser("alice", nil)
		w.withCurrent("alice", ago(6*time.Minute), "", "")
		failing := true
		create := w.keys.CreateAccessKeyFn
		w.keys.CreateAccessKeyFn = func(ctx context.Context, user string) (keyrot.Credentials, error) {
			if failing {
				return keyrot.Credentials{}, fmt.Errorf("iam: create access key: %w (%w)", failWith, keyrot.ErrKeyLimit)
			}
			return create(ctx, user)
		}
		return w, w.rotator(nil), &failing
	}
	pass := func(t *testing.T, w *world, r *keyrot.Rotator) {
		t.Helper()
		_, _ = r.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
		w.clock.Advance(30 * time.Second)
	}

	t.Run("three failed passes, one email; recovery, one email", func(t *testing.T) {
		w, r, failing := setup(t, errors.New("ServiceFailure"))
		pass(t, w, r)
		pass(t, w, r)
		if got := describeEvents(w.notifier.Events(), ""); len(got) != 0 {
			t.Fatalf("events after two failed passes = %q, want none", got)
		}
		for range 5 {
			pass(t, w, r)
		}
		events := w.notifier.Events()
		if got, want := describeEvents(events, ""), []string{"rotation_failed"}; !slices.Equal(got, want) {
			t.Fatalf("events after seven failed passes = %q, want %q", got, want)
		}
		if !strings.Contains(events[0].Summary, "failed 3 times since") || !strings.Contains(events[0].Err, "ServiceFailure") {
			t.Errorf("FAILED summary %q, err %q: want the count, the start and the error", events[0].Summary, events[0].Err)
		}
		if got := w.state("alice").FailingSince; !got.Equal(now) {
			t.Errorf("recorded incident start = %v, want %v", got, now)
		}

		// A restart: the record on the secret keeps the incident reported.
		r = w.rotator(nil)
		for range 4 {
			pass(t, w, r)
		}
		if got := len(w.notifier.Events()); got != 1 {
			t.Errorf("%d events after a restart mid-incident, want still 1", got)
		}
		*failing = false
		pass(t, w, r)
		pass(t, w, r)
		if got, want := describeEvents(w.notifier.Events(), ""), []string{"rotation_failed", "key_created AKIA000000000001", "rotation_recovered"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
		if got := w.state("alice").FailingSince; !got.IsZero() {
			t.Errorf("incident record %v left after recovery", got)
		}
	})

	t.Run("a failure the next pass repairs: no email", func(t *testing.T) {
		w, r, failing := setup(t, errors.New("ServiceFailure"))
		pass(t, w, r)
		pass(t, w, r)
		*failing = false
		pass(t, w, r)
		if got, want := describeEvents(w.notifier.Events(), ""), []string{"key_created AKIA000000000001"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
		if got := w.logs.String(); !strings.Contains(got, "pass failed; the next pass retries") {
			t.Errorf("a failed pass was not logged:\n%s", got)
		}
	})

	t.Run("ten minutes of failures with few passes: one email", func(t *testing.T) {
		w, r, _ := setup(t, errors.New("ServiceFailure"))
		pass(t, w, r)
		w.clock.Advance(10 * time.Minute)
		pass(t, w, r)
		if got, want := describeEvents(w.notifier.Events(), ""), []string{"rotation_failed"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
	})

	t.Run("throttling never opens an incident", func(t *testing.T) {
		w, r, _ := setup(t, apiError{"Throttling"})
		for range 30 {
			pass(t, w, r)
		}
		if got := describeEvents(w.notifier.Events(), ""); len(got) != 0 {
			t.Errorf("events after 30 throttled passes = %q, want none", got)
		}
	})
}

func TestIsThrottle(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{apiError{"Throttling"}, true},
		{fmt.Errorf("secretsmanager: tag: %w", apiError{"ThrottlingException"}), true},
		{errors.Join(apiError{"TooManyRequestsException"}, errors.New("retry quota exceeded")), true},
		{apiError{"LimitExceededException"}, false}, // Secrets Manager's version quota: not throttling
		{apiError{"ServiceFailure"}, false},
		{errors.New("Throttling"), false},
		{nil, false},
	} {
		if got := keyrot.IsThrottle(tt.err); got != tt.want {
			t.Errorf("IsThrottle(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestRotatorDryRunDoesNotHoldUsers: a dry run (a view of the fleet) runs
// beside a pass that acts on the same user, and neither waits for the
// other nor makes it skip the user.
func TestRotatorDryRunDoesNotHoldUsers(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	inStep, release := make(chan struct{}), make(chan struct{})
	r := w.rotator(func(c *keyrot.RotatorConfig) {
		c.StepHook = func(_ context.Context, point string) error {
			if point == "after-store-pending" {
				close(inStep)
				<-release
			}
			return nil
		}
	})
	done := make(chan keyrot.UserResult)
	go func() {
		res, _ := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{})
		done <- res
	}()
	<-inStep // the acting pass is in the middle of alice's rotation
	view, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if res := view.Results[0]; res.Busy || res.Err != nil {
		t.Errorf("dry run beside an acting pass: busy %v, err %v; want a view of the user", res.Busy, res.Err)
	}
	close(release)
	if res := <-done; res.Busy || res.Err != nil || len(res.Done) == 0 {
		t.Errorf("the acting pass: busy %v, err %v, done %v; want its rotation finished", res.Busy, res.Err, res.Done)
	}
}

// TestKeyInUseToldOnceWhenTheDeactivationIsRetried: the key_in_use warning
// comes from the deactivation step, which fails here and is retried on
// the next pass: the record on the secret keeps the warning from going out
// twice (the notifier sends whatever it is given).
func TestKeyInUseToldOnceWhenTheDeactivationIsRetried(t *testing.T) {
	w := newWorld(t)
	w.addUser("alice", nil)
	w.withCurrent("alice", ago(2*time.Minute), prevID, keyrot.KeyActive)
	w.lastUsed[prevID] = ago(30 * time.Second)
	setStatus := w.keys.SetKeyStatusFn
	w.keys.SetKeyStatusFn = func(context.Context, string, string, keyrot.KeyStatus) error {
		return errors.New("AccessDenied")
	}
	r := w.rotator(nil)
	if res, _ := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); res.Err == nil {
		t.Fatal("the deactivation did not fail")
	}
	w.keys.SetKeyStatusFn = setStatus
	if res, err := r.Reconcile(context.Background(), "alice", keyrot.RunOptions{}); err != nil || res.Err != nil {
		t.Fatalf("retried pass: %v %v", err, res.Err)
	}
	n := 0
	for _, e := range w.notifier.Events() {
		if e.Warning == keyrot.WarnKeyInUse {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("key_in_use sent %d times over a failed and a retried deactivation, want 1", n)
	}
}
