package app_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/iam"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
	"github.com/keyrot/keyrot/secretsmanager"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// newClock is a driven clock on which waiting moves time forward at once, so
// backoff and propagation delays cost nothing. The sandbox shares it.
func newClock() *mock.Clock {
	c := mock.NewClock(t0)
	c.SetAutoAdvance(true)
	return c
}

// harness is an AWS backend with helpers to build engines on it: the
// sandbox on a driven clock, or moto_server on the wall clock (clock nil).
type harness struct {
	t      testing.TB
	sb     *sandbox.Server // nil on moto
	clock  *mock.Clock     // nil on moto: the engine runs on the wall clock
	aws    aws.Config
	iam    *awsiam.Client
	events *mock.Notifier
	// foreign are the keys created outside keyrot (adopted, not orphans).
	foreign map[string]bool
	// unit is the engine's minute: the seed timings (5m, 2m, 1m) are 5, 2
	// and 1 units. A minute on the driven clock, a second on moto.
	unit time.Duration
	// ns prefixes user and group names, unique per test on a shared moto.
	ns string
}

func newHarness(t testing.TB, faults sandbox.Faults) *harness {
	t.Helper()
	clock := newClock()
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 7, Faults: faults})
	cfg := sandboxtest.Config(t, sb)
	return &harness{t: t, sb: sb, clock: clock, aws: cfg, iam: awsiam.NewFromConfig(cfg), events: &mock.Notifier{}, foreign: map[string]bool{}, unit: time.Minute}
}

// name is a user or group name unique to the test.
func (h *harness) name(s string) string { return h.ns + s }

// config is the seed configuration for users, its timings in units.
func (h *harness) config(users ...string) config.Config {
	cfg := config.Default()
	cfg.Users.Names = users
	cfg.Notify.Via = "log"
	cfg.Rotation.IAMRate = 10000
	if h.unit != time.Minute {
		r := &cfg.Rotation
		r.RotateEvery, r.DeactivateAfter, r.DeleteAfter = config.Duration(5*h.unit), config.Duration(2*h.unit), config.Duration(h.unit)
		r.OrphanGrace, r.VerifyTimeout = config.Duration(3*h.unit), config.Duration(5*h.unit)
	}
	return cfg
}

func (h *harness) engine(cfg config.Config, hook func(context.Context, string) error) *app.App {
	h.t.Helper()
	var clock keyrot.Clock = keyrot.SystemClock{}
	if h.clock != nil {
		clock = h.clock
	}
	a, err := app.New(context.Background(), cfg, app.Options{AWS: &h.aws, Clock: clock, Notifier: h.events, StepHook: hook})
	if err != nil {
		h.t.Fatalf("app.New: %v", err)
	}
	return a
}

func (h *harness) createUser(name string, keys int) {
	h.t.Helper()
	ctx := context.Background()
	if _, err := h.iam.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String(name)}); err != nil {
		h.t.Fatalf("create user: %v", err)
	}
	for range keys {
		out, err := h.iam.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String(name)})
		if err != nil {
			h.t.Fatalf("create key: %v", err)
		}
		h.foreign[aws.ToString(out.AccessKey.AccessKeyId)] = true
	}
}

func (h *harness) keys(user string) []iamtypes.AccessKeyMetadata {
	h.t.Helper()
	out, err := h.iam.ListAccessKeys(context.Background(), &awsiam.ListAccessKeysInput{UserName: aws.String(user)})
	if err != nil {
		h.t.Fatalf("list keys: %v", err)
	}
	return out.AccessKeyMetadata
}

// pass runs one reconcile pass and fails the test on any failed user.
func (h *harness) pass(a *app.App, opts keyrot.RunOptions) keyrot.Summary {
	h.t.Helper()
	sum, err := a.Rotator.ReconcileAll(context.Background(), opts)
	if err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
	for _, r := range sum.Results {
		if r.Err != nil {
			h.t.Fatalf("user %s failed at %s: %v", r.User, h.now().Format(time.RFC3339), r.Err)
		}
	}
	return sum
}

// runUntil runs pass after pass, each when the last one asked, until the
// given time.
func (h *harness) runUntil(a *app.App, until time.Time) (passes int) {
	h.t.Helper()
	for {
		sum := h.pass(a, keyrot.RunOptions{})
		passes++
		if sum.NextAt.IsZero() || sum.NextAt.After(until) {
			h.waitUntil(until)
			return passes
		}
		h.waitUntil(sum.NextAt)
	}
}

// now is the engine's time.
func (h *harness) now() time.Time {
	if h.clock == nil {
		return time.Now()
	}
	return h.clock.Now()
}

// waitUntil moves the driven clock to t, or on the wall clock waits for t;
// a time already past (waits inside a pass may have gone past it) is a no-op.
func (h *harness) waitUntil(t time.Time) {
	d := t.Sub(h.now())
	switch {
	case d <= 0:
	case h.clock != nil:
		h.clock.Set(t)
	default:
		timer := time.NewTimer(d)
		defer timer.Stop()
		<-timer.C
	}
}

// checkInvariants asserts what must hold whatever happened: at most two
// keys, every key accounted for, and the current secret's key accepted by STS.
func (h *harness) checkInvariants(a *app.App, user string) keyrot.Credentials {
	h.t.Helper()
	ctx := context.Background()
	keys := h.keys(user)
	if len(keys) > 2 {
		h.t.Fatalf("user %s has %d keys", user, len(keys))
	}
	cur, err := a.Store.Current(ctx, user)
	if err != nil {
		h.t.Fatalf("current credentials of %s: %v", user, err)
	}
	if err := iam.NewVerifier(h.aws).VerifyKey(ctx, cur); err != nil {
		h.t.Fatalf("current key %s of %s not accepted by STS: %v", cur.AccessKeyID, user, err)
	}
	st, err := a.Store.Load(ctx, user)
	if err != nil {
		h.t.Fatalf("load: %v", err)
	}
	for _, k := range keys {
		id := aws.ToString(k.AccessKeyId)
		if id != cur.AccessKeyID && id != st.PreviousKeyID && !h.foreign[id] {
			if _, ok := st.Inactive[id]; !ok {
				h.t.Fatalf("user %s has key %s that keyrot does not account for (current %s, previous %s)", user, id, cur.AccessKeyID, st.PreviousKeyID)
			}
		}
	}
	return cur
}

func TestFullCycleSeedTimings(t *testing.T) {
	fullCycle(t, newHarness(t, sandbox.Faults{PropagationDelay: 9 * time.Second}))
}

// fullCycle adopts an existing key, retires it on the seed timings and
// rotates again. On the driven clock it checks each boundary to the
// second; on the wall clock, that each step happened by its time.
func fullCycle(t *testing.T, h *harness) {
	user := h.name("ci-bot")
	h.createUser(user, 1) // an existing key keyrot did not create
	old := aws.ToString(h.keys(user)[0].AccessKeyId)
	a := h.engine(h.config(user), nil)

	sum := h.pass(a, keyrot.RunOptions{})
	if got, want := sum.Created, 1; got != want {
		t.Fatalf("created = %d, want %d", got, want)
	}
	first := h.checkInvariants(a, user)
	if first.AccessKeyID == old {
		t.Fatal("the adopted key became current")
	}
	start := h.now()
	exact := h.clock != nil
	u := h.unit

	// The adopted key is deactivated 2m after the new key became current...
	if exact {
		h.clock.Set(start.Add(2*u - time.Second))
		if sum := h.pass(a, keyrot.RunOptions{}); sum.Deactivated != 0 {
			t.Fatal("deactivated before deactivate_after")
		}
		h.clock.Set(start.Add(2 * u))
		if sum := h.pass(a, keyrot.RunOptions{}); sum.Deactivated != 1 {
			t.Fatalf("deactivated = %d at deactivate_after, want 1", sum.Deactivated)
		}
		// ... and deleted 1m later.
		h.clock.Set(start.Add(3 * u))
		if sum := h.pass(a, keyrot.RunOptions{}); sum.Deleted != 1 {
			t.Fatalf("deleted = %d at delete_after, want 1", sum.Deleted)
		}
		if keys := h.keys(user); len(keys) != 1 || aws.ToString(keys[0].AccessKeyId) != first.AccessKeyID {
			t.Fatalf("keys after the cycle = %v, want only %s", keys, first.AccessKeyID)
		}
	}
	// The next rotation comes when the current key is 5m old.
	h.runUntil(a, start.Add(10*u))
	second := h.checkInvariants(a, user)
	if second.AccessKeyID == first.AccessKeyID {
		t.Fatal("no rotation after rotate_every")
	}
	if exact {
		for kind, want := range map[keyrot.EventKind]int{keyrot.EventKeyCreated: 3, keyrot.EventKeyDeactivated: 2, keyrot.EventKeyDeleted: 2, keyrot.EventRotationFailed: 0} {
			if got := h.events.Count(kind); got != want {
				t.Errorf("%s events = %d, want %d", kind, got, want)
			}
		}
		return
	}
	// On the wall clock, the events say when each step happened: in order,
	// and none early. The secret's tags keep whole seconds, so a step may
	// come up to a second before its nominal time.
	at := map[string]time.Time{}
	var order []string
	for _, e := range h.events.Events() {
		switch {
		case e.Kind == keyrot.EventRotationFailed:
			t.Fatalf("rotation failed: %s", e.Err)
		case e.Kind != keyrot.EventKeyCreated && e.Kind != keyrot.EventKeyDeactivated && e.Kind != keyrot.EventKeyDeleted:
		case e.KeyID == old || e.KeyID == first.AccessKeyID:
			step := string(e.Kind) + " " + map[bool]string{true: "old", false: "first"}[e.KeyID == old]
			order = append(order, step)
			at[step] = e.Time
		}
	}
	if got, want := strings.Join(order, ", "), "key_created first, key_deactivated old, key_deleted old"; !strings.HasPrefix(got, want) {
		t.Fatalf("events = %s, want them to start with %s", got, want)
	}
	early := func(step, after string, d time.Duration) {
		if gap := at[step].Sub(at[after]); gap < d-time.Second {
			t.Errorf("%s came %s after %s, want at least %s", step, gap, after, d)
		}
	}
	early("key_deactivated old", "key_created first", 2*u)
	early("key_deleted old", "key_deactivated old", u)
	if at["key_deleted old"].After(at["key_created first"].Add(5 * u)) {
		t.Error("the adopted key outlived the next rotation: IAM's two-key limit would block it")
	}
}

// TestTwoDaysOfSeedCadence runs 48 hours of 5-minute rotations on the
// sandbox's driven clock: the version quota must never be hit, and every
// promoted key was accepted by STS (promotion requires it).
func TestTwoDaysOfSeedCadence(t *testing.T) {
	if testing.Short() {
		t.Skip("48 simulated hours: skipped with -short")
	}
	h := newHarness(t, sandbox.Faults{PropagationDelay: 8 * time.Second})
	h.createUser("ci-bot", 0)
	a := h.engine(h.config("ci-bot"), nil)
	passes := h.runUntil(a, t0.Add(48*time.Hour))
	h.checkInvariants(a, "ci-bot")
	created := h.events.Count(keyrot.EventKeyCreated)
	if created < 48*12-2 {
		t.Fatalf("only %d rotations in 48h at a 5m cadence", created)
	}
	// No secret in the ring holds more versions than the quota allows.
	sm := awssm.NewFromConfig(h.aws)
	ring := keyrot.DefaultPolicy().RingSize()
	for i := range ring {
		name := a.Store.SecretName("ci-bot", i)
		out, err := sm.ListSecretVersionIds(context.Background(), &awssm.ListSecretVersionIdsInput{SecretId: aws.String(name), IncludeDeprecated: aws.Bool(true), MaxResults: aws.Int32(100)})
		if err != nil {
			t.Fatalf("list versions of %s: %v", name, err)
		}
		if n := len(out.Versions); n > 100 {
			t.Errorf("%s holds %d versions", name, n)
		}
	}
	t.Logf("48h: %d passes, %d rotations over a ring of %d secrets", passes, created, ring)
}

func TestRestartMidCycle(t *testing.T) {
	restartMidCycle(t, newHarness(t, sandbox.Faults{}))
}

func restartMidCycle(t *testing.T, h *harness) {
	user := h.name("deploy-bot")
	h.createUser(user, 0)
	cfg := h.config(user)
	start := h.now()
	// Pass until a rotation leaves the previous key active (5 units on the
	// driven clock; on moto's wall clock a loaded machine may pass later,
	// so the restart point is a state, not a time).
	a := h.engine(cfg, nil)
	for len(h.keys(user)) != 2 {
		if h.now().After(start.Add(30 * h.unit)) {
			t.Fatalf("keys = %d after 30 units, want a rotation that leaves 2", len(h.keys(user)))
		}
		if sum := h.pass(a, keyrot.RunOptions{}); !sum.NextAt.IsZero() {
			h.waitUntil(sum.NextAt)
		}
	}
	// A new process knows nothing but what AWS holds.
	b := h.engine(cfg, nil)
	h.runUntil(b, h.now().Add(15*h.unit))
	h.checkInvariants(b, user)
	if got := h.events.Count(keyrot.EventKeyDeleted); got < 2 {
		t.Fatalf("deleted events = %d after 20 units, want >= 2", got)
	}
}

var errCrash = errors.New("injected crash")

// crashPoints are the Rotator's step boundaries.
var crashPoints = []string{"after-intent", "after-create-key", "after-store-pending", "after-verify", "after-create",
	"after-mark-inactive", "after-deactivate", "after-delete", "after-record_inactive"}

// TestCrashAtEveryStepBoundary stops the engine at each step boundary, as a
// crash would, and lets a fresh engine take over.
func TestCrashAtEveryStepBoundary(t *testing.T) {
	for _, point := range crashPoints {
		t.Run(point, func(t *testing.T) {
			crashAt(t, newHarness(t, sandbox.Faults{PropagationDelay: 5 * time.Second}), point)
		})
	}
}

func crashAt(t *testing.T, h *harness, point string) {
	user := h.name("ci-bot")
	h.createUser(user, 1)
	cfg := h.config(user)
	crashed := false
	hook := func(_ context.Context, at string) error {
		if at == point && !crashed {
			crashed = true
			return errCrash
		}
		return nil
	}
	a := h.engine(cfg, hook)
	until := h.now().Add(12 * h.unit)
	for i := 0; i < 50 && !crashed && h.now().Before(until); i++ {
		sum, err := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !crashed && !sum.NextAt.IsZero() {
			h.waitUntil(sum.NextAt)
		}
	}
	if !crashed && point != "after-record_inactive" {
		t.Fatalf("never reached %s", point)
	}
	b := h.engine(cfg, nil)
	h.runUntil(b, h.now().Add(12*h.unit))
	h.checkInvariants(b, user)
}

// TestFaultsInsideSteps fails single AWS calls inside the store and the
// promotion (after the SDK's retries are spent), then lets the engine recover.
func TestFaultsInsideSteps(t *testing.T) {
	for _, op := range []string{"PutSecretValue", "UpdateSecretVersionStage", "TagResource", "UntagResource", "CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey", "GetCallerIdentity"} {
		t.Run(op, func(t *testing.T) {
			h := newHarness(t, sandbox.Faults{})
			h.createUser("ci-bot", 0)
			cfg := h.config("ci-bot")
			a := h.engine(cfg, nil)
			h.runUntil(a, t0.Add(4*time.Minute))
			h.sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: op, Kind: "5xx", Count: 3}}})
			for range 8 { // failures are expected here: the faults outlast the SDK's retries
				sum, err := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !sum.NextAt.IsZero() && sum.NextAt.After(h.clock.Now()) {
					h.clock.Set(sum.NextAt)
				} else {
					h.clock.Advance(30 * time.Second)
				}
			}
			h.runUntil(a, h.clock.Now().Add(15*time.Minute))
			h.checkInvariants(a, "ci-bot")
		})
	}
}

func TestThrottlingAndServerErrors(t *testing.T) {
	h := newHarness(t, sandbox.Faults{Rules: []sandbox.FaultRule{{Kind: "throttle", Rate: 0.15}, {Kind: "5xx", Rate: 0.05}}})
	for i := range 5 {
		h.sb.SetFaults(sandbox.Faults{}) // set-up must not fail
		h.createUser(fmt.Sprintf("svc-%d", i), 1)
	}
	h.sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Kind: "throttle", Rate: 0.15}, {Kind: "5xx", Rate: 0.05}}})
	cfg := h.config("svc-0", "svc-1", "svc-2", "svc-3", "svc-4")
	a := h.engine(cfg, nil)
	// Individual passes may fail for a user; the engine must converge.
	until := t0.Add(30 * time.Minute)
	for h.clock.Now().Before(until) {
		sum, err := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{})
		if err != nil {
			h.clock.Advance(30 * time.Second)
			continue
		}
		next := sum.NextAt
		if sum.Failed > 0 || next.IsZero() || !next.After(h.clock.Now()) {
			next = h.clock.Now().Add(30 * time.Second)
		}
		h.clock.Set(next)
	}
	h.sb.SetFaults(sandbox.Faults{})
	h.runUntil(a, h.clock.Now().Add(10*time.Minute))
	for i := range 5 {
		h.checkInvariants(a, fmt.Sprintf("svc-%d", i))
	}
}

// TestTwoEnginesAtOnce runs two engines on the same user at the same time:
// only one key may be stored per generation, and neither may leave a key behind.
func TestTwoEnginesAtOnce(t *testing.T) {
	twoEngines(t, newHarness(t, sandbox.Faults{}))
}

func twoEngines(t *testing.T, h *harness) {
	user := h.name("ci-bot")
	h.createUser(user, 0)
	cfg := h.config(user)
	a, b := h.engine(cfg, nil), h.engine(cfg, nil)
	for round := range 6 {
		var wg sync.WaitGroup
		var errs [2]error
		for i, e := range []*app.App{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = e.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{Force: round%2 == 0})
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := len(h.keys(user)); n > 2 {
			t.Fatalf("round %d: %d keys", round, n)
		}
		h.waitUntil(h.now().Add(h.unit))
	}
	h.runUntil(a, h.now().Add(12*h.unit))
	h.checkInvariants(a, user)
}

func TestDryRunChangesNothing(t *testing.T) {
	dryRun(t, newHarness(t, sandbox.Faults{}))
}

func dryRun(t *testing.T, h *harness) {
	user := h.name("ci-bot")
	h.createUser(user, 2)
	before := h.keys(user)
	a := h.engine(h.config(user), nil)
	h.waitUntil(h.now().Add(3 * h.unit)) // both keys idle: one is due to be deactivated
	sum := h.pass(a, keyrot.RunOptions{DryRun: true, Force: true})
	if len(sum.Results[0].Planned) == 0 {
		t.Fatal("dry run planned nothing for a user with two foreign keys")
	}
	after := h.keys(user)
	if len(after) != len(before) || after[0].Status != before[0].Status || after[1].Status != before[1].Status {
		t.Fatalf("dry run changed keys: %v -> %v", before, after)
	}
	if _, err := a.Store.Current(context.Background(), user); !errors.Is(err, keyrot.ErrSecretNotFound) {
		t.Fatalf("dry run wrote a secret: %v", err)
	}
}

func TestExemptAndMissingUsers(t *testing.T) {
	exemptAndMissing(t, newHarness(t, sandbox.Faults{}))
}

func exemptAndMissing(t *testing.T, h *harness) {
	ctx := context.Background()
	bot, glass, legacy, group := h.name("ci-bot"), h.name("break-glass"), h.name("legacy"), h.name("keyrot-exempt")
	h.createUser(bot, 0)
	h.createUser(glass, 0)
	h.createUser(legacy, 0)
	if _, err := h.iam.CreateGroup(ctx, &awsiam.CreateGroupInput{GroupName: aws.String(group)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.iam.AddUserToGroup(ctx, &awsiam.AddUserToGroupInput{GroupName: aws.String(group), UserName: aws.String(glass)}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.iam.TagUser(ctx, &awsiam.TagUserInput{UserName: aws.String(legacy), Tags: []iamtypes.Tag{{Key: aws.String("keyrot:exempt"), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}
	cfg := h.config(bot, glass, legacy, h.name("gone"))
	cfg.Users.ExemptGroup, cfg.Users.ExemptTag = group, "keyrot:exempt=true"
	sum := h.pass(h.engine(cfg, nil), keyrot.RunOptions{})
	byUser := map[string]keyrot.UserResult{}
	for _, r := range sum.Results {
		byUser[r.User] = r
	}
	if !byUser[glass].Exempt || !byUser[legacy].Exempt || byUser[bot].Exempt {
		t.Fatalf("exemptions wrong: %+v", sum.Results)
	}
	if len(h.keys(glass)) != 0 || len(h.keys(legacy)) != 0 {
		t.Fatal("exempt users got keys")
	}
	if w := byUser[h.name("gone")].Warnings; len(w) != 1 || w[0].Warning != keyrot.WarnUserDeleted {
		t.Fatalf("missing user warnings = %v", w)
	}
	if sum.Created != 1 {
		t.Fatalf("created = %d, want 1", sum.Created)
	}
}

func TestUsersByTagPaginated(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	for i := range 230 {
		in := &awsiam.CreateUserInput{UserName: aws.String(fmt.Sprintf("u%03d", i))}
		if i%10 == 0 {
			in.Tags = []iamtypes.Tag{{Key: aws.String("keyrot:managed"), Value: aws.String("true")}}
		}
		if _, err := h.iam.CreateUser(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	cfg := h.config()
	cfg.Users.Tag = "keyrot:managed=true"
	users, err := h.engine(cfg, nil).Rotator.ResolveUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(users), 23; got != want {
		t.Fatalf("tagged users = %d, want %d (pagination past 100?)", got, want)
	}
	if !slices.ContainsFunc(users, func(u keyrot.ResolvedUser) bool { return u.User.Name == "u220" }) {
		t.Fatal("u220, on the third page, is missing")
	}
}

func TestUserReadsOwnSecretWithItsKey(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	userReadsOwnSecret(t, h, func(id, secret string) aws.Config { return sandboxtest.UserConfig(t, h.sb, id, secret) })
}

func userReadsOwnSecret(t *testing.T, h *harness, userConfig func(id, secret string) aws.Config) {
	user := h.name("ci-bot")
	h.createUser(user, 0)
	cfg := h.config(user)
	a := h.engine(cfg, nil)
	h.pass(a, keyrot.RunOptions{})
	cur := h.checkInvariants(a, user)
	// The pipeline reads its next key with its current one (resource policy).
	store := secretsmanager.New(awssm.NewFromConfig(userConfig(cur.AccessKeyID, cur.SecretAccessKey)), secretsmanager.Config{Prefix: cfg.Secrets.Prefix})
	got, err := store.Current(context.Background(), user)
	if err != nil {
		t.Fatalf("user reading its own secret: %v", err)
	}
	if got.AccessKeyID != cur.AccessKeyID {
		t.Fatalf("read %s, want %s", got.AccessKeyID, cur.AccessKeyID)
	}
	if _, err := store.Current(context.Background(), h.name("someone-else")); err == nil || strings.Contains(err.Error(), cur.SecretAccessKey) {
		t.Fatalf("reading another user's secret: %v", err)
	}
}

// TestStandingWarningSentOnceAcrossRestarts: an unmanaged key under report
// is warned about once per quiet period, even when each pass is a new
// process (a Lambda cold start), and again at once if it ends and returns.
func TestStandingWarningSentOnceAcrossRestarts(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	h.createUser("ci-bot", 0)
	cfg := h.config("ci-bot")
	cfg.Rotation.UnmanagedKeys = "report"
	h.pass(h.engine(cfg, nil), keyrot.RunOptions{}) // keyrot's key is current
	out, err := h.iam.CreateAccessKey(context.Background(), &awsiam.CreateAccessKeyInput{UserName: aws.String("ci-bot")})
	if err != nil {
		t.Fatal(err)
	}
	foreign := aws.ToString(out.AccessKey.AccessKeyId)
	unmanaged := func() int {
		n := 0
		for _, e := range h.events.Events() {
			if e.Warning == keyrot.WarnUnmanagedKey {
				n++
			}
		}
		return n
	}
	for range 3 { // three cold starts within the quiet period
		h.pass(h.engine(cfg, nil), keyrot.RunOptions{})
		h.clock.Advance(time.Minute)
	}
	if got := unmanaged(); got != 1 {
		t.Fatalf("warnings after 3 fresh engines = %d, want 1", got)
	}
	h.clock.Advance(24 * time.Hour)
	h.pass(h.engine(cfg, nil), keyrot.RunOptions{})
	if got := unmanaged(); got != 2 {
		t.Fatalf("warnings after the quiet period = %d, want 2", got)
	}
	// The condition ends (someone deletes the key), then comes back.
	if _, err := h.iam.DeleteAccessKey(context.Background(), &awsiam.DeleteAccessKeyInput{UserName: aws.String("ci-bot"), AccessKeyId: aws.String(foreign)}); err != nil {
		t.Fatal(err)
	}
	h.runUntil(h.engine(cfg, nil), h.clock.Now().Add(4*time.Minute)) // a rotation, its predecessor retired
	if _, err := h.iam.CreateAccessKey(context.Background(), &awsiam.CreateAccessKeyInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	h.pass(h.engine(cfg, nil), keyrot.RunOptions{})
	if got := unmanaged(); got != 3 {
		t.Fatalf("warnings after the condition came back = %d, want 3", got)
	}
}
