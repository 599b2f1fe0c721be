package keyrot_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/mock"
)

// delivered is s with target's record naming keyID (and a reported failure
// since failing, if not zero).
func delivered(s keyrot.SecretState, target, keyID string, failing time.Time) keyrot.SecretState {
	d := map[string]keyrot.Delivery{}
	for k, v := range s.Delivered {
		d[k] = v
	}
	d[target] = keyrot.Delivery{KeyID: keyID, FailingSince: failing}
	s.Delivered = d
	return s
}

func stepKinds(p keyrot.Plan) []string {
	var out []string
	for _, st := range p.Steps {
		s := string(st.Kind)
		if st.KeyID != "" {
			s += " " + st.KeyID
		}
		if st.Target != "" {
			s += " -> " + st.Target
		}
		out = append(out, s)
	}
	return out
}

func TestPlanDeliveryGatesDeactivation(t *testing.T) {
	const gh, gl = "github/acme/app", "gitlab/project/acme/app"
	p := keyrot.DefaultPolicy() // rotate 5m, deactivate 2m, delete 1m
	// The current key was made 1m ago, replacing prevID: due for
	// deactivation at +1m, for the next rotation at +4m.
	base := current(ago(time.Minute), prevID)
	keys := []keyrot.AccessKey{active(prevID, ago(6*time.Minute)), active(curID, ago(time.Minute))}
	bothConfirmed := delivered(delivered(base, gh, curID, time.Time{}), gl, curID, time.Time{})
	ghBehind := delivered(delivered(base, gh, prevID, time.Time{}), gl, curID, time.Time{})
	proceed := p
	proceed.SyncOnFailure = keyrot.SyncProceed
	maxHold := p
	maxHold.SyncMaxHold = 30 * time.Second

	tests := []struct {
		name      string
		state     keyrot.SecretState
		policy    keyrot.Policy
		at        time.Time
		steps     []string
		nextAt    time.Time
		heldFor   []string
		warnHoldX bool
	}{
		{name: "both confirmed: deactivated when due", state: bothConfirmed, policy: p, at: now.Add(time.Minute),
			steps: []string{"deactivate " + prevID}},
		{name: "one behind, not due yet: deliver, deactivation scheduled", state: ghBehind, policy: p, at: now,
			steps: []string{"deliver " + curID + " -> " + gh}, nextAt: now.Add(time.Minute)},
		{name: "never delivered: both targets get it", state: base, policy: p, at: now,
			steps: []string{"deliver " + curID + " -> " + gh, "deliver " + curID + " -> " + gl}, nextAt: now.Add(time.Minute)},
		{name: "due but behind: held until the next rotation is due", state: ghBehind, policy: p, at: now.Add(time.Minute),
			steps: []string{"deliver " + curID + " -> " + gh}, nextAt: now.Add(4 * time.Minute), heldFor: []string{gh}},
		{name: "held to the second before max_hold", state: ghBehind, policy: maxHold, at: now.Add(time.Minute + 29*time.Second),
			steps: []string{"deliver " + curID + " -> " + gh}, nextAt: now.Add(time.Minute + 30*time.Second), heldFor: []string{gh}},
		{name: "hold expired, on_failure hold: still held, reported", state: ghBehind, policy: maxHold, at: now.Add(time.Minute + 30*time.Second),
			steps: []string{"deliver " + curID + " -> " + gh}, heldFor: []string{gh}, warnHoldX: true},
		{name: "hold expired, on_failure proceed: deactivated, reported", state: ghBehind, policy: proceed, at: now.Add(4 * time.Minute),
			steps: []string{"deliver " + curID + " -> " + gh, "deactivate " + prevID}, warnHoldX: true},
		{name: "confirmed after a hold: deactivated at once", state: bothConfirmed, policy: p, at: now.Add(3 * time.Minute),
			steps: []string{"deactivate " + prevID}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := obs(tc.state, keys...)
			o.Targets = []string{gh, gl}
			plan := keyrot.PlanUser(o, tc.policy, tc.at, false)
			if got := stepKinds(plan); !slices.Equal(got, tc.steps) {
				t.Errorf("steps = %q, want %q", got, tc.steps)
			}
			if !tc.nextAt.IsZero() && !plan.NextAt.Equal(tc.nextAt) {
				t.Errorf("NextAt = %v (%s), want %v", plan.NextAt, plan.Next, tc.nextAt)
			}
			if got := plan.Retiring[prevID].HeldFor; !slices.Equal(got, tc.heldFor) {
				t.Errorf("HeldFor = %q, want %q", got, tc.heldFor)
			}
			warned := slices.ContainsFunc(plan.Warnings, func(e keyrot.Event) bool { return e.Warning == keyrot.WarnSyncHoldExpired })
			if warned != tc.warnHoldX {
				t.Errorf("sync_hold_expired warning = %v, want %v (%v)", warned, tc.warnHoldX, plan.Warnings)
			}
		})
	}
}

func TestPlanDeliveryNotForAnInactiveCurrentKey(t *testing.T) {
	o := obs(current(ago(time.Minute), ""), inactive(curID, ago(time.Minute)))
	o.Targets = []string{"github/acme/app"}
	plan := keyrot.PlanUser(o, keyrot.DefaultPolicy(), now, false)
	for _, st := range plan.Steps {
		if st.Kind == keyrot.StepDeliver {
			t.Fatalf("planned %v for a current key deactivated outside keyrot", st)
		}
	}
}

func TestDeliveryTargetCarries(t *testing.T) {
	target := keyrot.DeliveryTarget{ID: "x", Users: []string{"ci-*", "deploy"}}
	for user, want := range map[string]bool{"ci-bot": true, "ci-": true, "deploy": true, "deployer": false, "alice": false} {
		if got := target.Carries(user); got != want {
			t.Errorf("Carries(%q) = %v, want %v", user, got, want)
		}
	}
}

func TestPolicyValidateSync(t *testing.T) {
	p := keyrot.DefaultPolicy()
	p.SyncOnFailure = "retry"
	if err := p.Validate(); err == nil {
		t.Error("on_failure retry accepted")
	}
	p.SyncOnFailure, p.SyncMaxHold = keyrot.SyncProceed, -time.Second
	if err := p.Validate(); err == nil {
		t.Error("negative max_hold accepted")
	}
}

// flakyTarget is a delivery target that fails while down is set, and
// remembers the keys it was given (ids only).
type flakyTarget struct {
	mu    sync.Mutex
	down  bool
	calls []string
}

func (f *flakyTarget) deliverer() *mock.Deliverer {
	return &mock.Deliverer{DeliverFn: func(_ context.Context, c keyrot.Credentials) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls = append(f.calls, c.AccessKeyID)
		if c.SecretAccessKey == "" {
			return errors.New("delivered without a secret")
		}
		if f.down {
			return errors.New("github: PUT secret: 503 Service Unavailable")
		}
		return nil
	}}
}

func (f *flakyTarget) set(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *flakyTarget) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func TestRotatorHoldsPreviousKeyUntilDelivered(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	w.addUser("ci-bot", nil)
	target := &flakyTarget{}
	newRotator := func() *keyrot.Rotator {
		return w.rotator(func(c *keyrot.RotatorConfig) {
			c.Targets = []keyrot.DeliveryTarget{{ID: "github/acme/app", Users: []string{"ci-*"}, Deliverer: target.deliverer()}}
		})
	}
	r := newRotator()
	pass := func() keyrot.Summary {
		t.Helper()
		sum, err := r.ReconcileAll(ctx, keyrot.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	pass() // first key, delivered
	first := w.state("ci-bot").Current.KeyID
	if got := w.state("ci-bot").Delivered["github/acme/app"].KeyID; got != first {
		t.Fatalf("delivery record = %q, want %s", got, first)
	}
	w.clock.Advance(5 * time.Minute)
	target.set(true)
	sum := pass() // rotation; the delivery fails
	second := w.state("ci-bot").Current.KeyID
	if second == first {
		t.Fatal("no rotation")
	}
	if got := sum.Results[0].NextAt; !got.Equal(w.clock.Now().Add(keyrot.DefaultSyncRetry)) {
		t.Errorf("NextAt = %v, want a retry after %s", got, keyrot.DefaultSyncRetry)
	}
	// Past deactivate_after (2m) the previous key stays active while the target fails.
	for range 12 {
		w.clock.Advance(20 * time.Second)
		pass()
	}
	if got := keyStatus(w, "ci-bot", first); got != keyrot.KeyActive {
		t.Fatalf("previous key %s is %s while the target has not confirmed its successor", first, got)
	}
	if n := w.notifier.Count(keyrot.EventSyncFailed); n != 1 {
		t.Errorf("sync_failed told %d times, want 1", n)
	}
	res := pass().Results[0]
	if len(res.Targets) != 1 || res.Targets[0].Confirmed || res.Targets[0].FailingSince.IsZero() || res.Targets[0].Err == "" {
		t.Errorf("target state = %+v, want failing and unconfirmed", res.Targets)
	}
	if got := res.Retiring[first].HeldFor; len(got) != 1 {
		t.Errorf("HeldFor = %q, want the target", got)
	}
	// A restart does not tell the incident again.
	r = newRotator()
	w.clock.Advance(20 * time.Second)
	pass()
	if n := w.notifier.Count(keyrot.EventSyncFailed); n != 1 {
		t.Errorf("sync_failed told %d times after a restart, want 1", n)
	}
	target.set(false)
	w.clock.Advance(20 * time.Second)
	pass()
	if got := keyStatus(w, "ci-bot", first); got != keyrot.KeyInactive {
		t.Errorf("previous key %s is %s once the target confirmed its successor, want Inactive", first, got)
	}
	if n := w.notifier.Count(keyrot.EventSyncRecovered); n != 1 {
		t.Errorf("sync_recovered told %d times, want 1", n)
	}
	// Neither this rotator nor a fresh one pushes the confirmed key again.
	calls := target.count()
	pass()
	r = newRotator()
	pass()
	if got := target.count(); got != calls {
		t.Errorf("%d more deliveries of a confirmed key", got-calls)
	}
	for _, secret := range w.issuedSecrets() {
		for _, e := range w.notifier.Events() {
			if strings.Contains(e.Summary+e.Err+e.Next, secret) {
				t.Errorf("event carries a secret: %+v", e)
			}
		}
		if strings.Contains(w.logs.String(), secret) {
			t.Error("a secret access key is in the log")
		}
	}
}

func TestAFailedDeliveryIsNeitherDoneNorAFailedPass(t *testing.T) {
	w := newWorld(t)
	w.addUser("ci-bot", nil)
	target := &flakyTarget{down: true}
	r := w.rotator(func(c *keyrot.RotatorConfig) {
		c.Targets = []keyrot.DeliveryTarget{{ID: "gitlab/project/42", Users: []string{"ci-bot"}, Deliverer: target.deliverer()}}
	})
	sum, err := r.ReconcileAll(context.Background(), keyrot.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := sum.Results[0]
	if res.Err != nil || sum.Failed != 0 {
		t.Errorf("pass failed: %v", res.Err)
	}
	if slices.ContainsFunc(res.Done, func(st keyrot.Step) bool { return st.Kind == keyrot.StepDeliver }) {
		t.Errorf("a failed delivery is listed as done: %v", res.Done)
	}
	if !slices.ContainsFunc(res.Planned, func(st keyrot.Step) bool { return st.Kind == keyrot.StepDeliver }) || target.count() != 1 {
		t.Errorf("delivery planned %v, tried %d times; want planned and tried once", res.Planned, target.count())
	}
}
