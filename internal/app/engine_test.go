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

// harness is a sandbox on a driven clock, with helpers to build engines on it.
type harness struct {
	t      testing.TB
	sb     *sandbox.Server
	clock  *mock.Clock
	aws    aws.Config
	iam    *awsiam.Client
	events *mock.Notifier
	// foreign are the keys created outside keyrot (adopted, not orphans).
	foreign map[string]bool
}

func newHarness(t testing.TB, faults sandbox.Faults) *harness {
	t.Helper()
	clock := newClock()
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 7, Faults: faults})
	cfg := sandboxtest.Config(t, sb)
	return &harness{t: t, sb: sb, clock: clock, aws: cfg, iam: awsiam.NewFromConfig(cfg), events: &mock.Notifier{}, foreign: map[string]bool{}}
}

func (h *harness) config(users ...string) config.Config {
	cfg := config.Default()
	cfg.Users.Names = users
	cfg.Notify.Via = "log"
	cfg.Rotation.IAMRate = 10000
	return cfg
}

func (h *harness) engine(cfg config.Config, hook func(context.Context, string) error) *app.App {
	h.t.Helper()
	a, err := app.New(context.Background(), cfg, app.Options{AWS: &h.aws, Clock: h.clock, Notifier: h.events, StepHook: hook})
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
			h.t.Fatalf("user %s failed at %s: %v", r.User, h.clock.Now().Format(time.RFC3339), r.Err)
		}
	}
	return sum
}

// runUntil drives the clock from pass to pass until the given time.
func (h *harness) runUntil(a *app.App, until time.Time) (passes int) {
	h.t.Helper()
	for {
		sum := h.pass(a, keyrot.RunOptions{})
		passes++
		if sum.NextAt.IsZero() || sum.NextAt.After(until) {
			if until.After(h.clock.Now()) { // waits inside a pass may have gone past it
				h.clock.Set(until)
			}
			return passes
		}
		if sum.NextAt.After(h.clock.Now()) {
			h.clock.Set(sum.NextAt)
		}
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
	h := newHarness(t, sandbox.Faults{PropagationDelay: 9 * time.Second})
	h.createUser("ci-bot", 1) // an existing key keyrot did not create
	old := aws.ToString(h.keys("ci-bot")[0].AccessKeyId)
	a := h.engine(h.config("ci-bot"), nil)

	sum := h.pass(a, keyrot.RunOptions{})
	if got, want := sum.Created, 1; got != want {
		t.Fatalf("created = %d, want %d", got, want)
	}
	first := h.checkInvariants(a, "ci-bot")
	if first.AccessKeyID == old {
		t.Fatal("the adopted key became current")
	}
	start := h.clock.Now()

	// The adopted key is deactivated 2m after the new key became current...
	h.clock.Set(start.Add(2*time.Minute - time.Second))
	if sum := h.pass(a, keyrot.RunOptions{}); sum.Deactivated != 0 {
		t.Fatal("deactivated before deactivate_after")
	}
	h.clock.Set(start.Add(2 * time.Minute))
	if sum := h.pass(a, keyrot.RunOptions{}); sum.Deactivated != 1 {
		t.Fatalf("deactivated = %d at deactivate_after, want 1", sum.Deactivated)
	}
	// ... and deleted 1m later.
	h.clock.Set(start.Add(3 * time.Minute))
	if sum := h.pass(a, keyrot.RunOptions{}); sum.Deleted != 1 {
		t.Fatalf("deleted = %d at delete_after, want 1", sum.Deleted)
	}
	if keys := h.keys("ci-bot"); len(keys) != 1 || aws.ToString(keys[0].AccessKeyId) != first.AccessKeyID {
		t.Fatalf("keys after the cycle = %v, want only %s", keys, first.AccessKeyID)
	}
	// The next rotation comes when the current key is 5m old.
	h.runUntil(a, start.Add(10*time.Minute))
	second := h.checkInvariants(a, "ci-bot")
	if second.AccessKeyID == first.AccessKeyID {
		t.Fatal("no rotation after rotate_every")
	}
	for kind, want := range map[keyrot.EventKind]int{keyrot.EventKeyCreated: 3, keyrot.EventKeyDeactivated: 2, keyrot.EventKeyDeleted: 2, keyrot.EventRotationFailed: 0} {
		if got := h.events.Count(kind); got != want {
			t.Errorf("%s events = %d, want %d", kind, got, want)
		}
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
	h := newHarness(t, sandbox.Faults{})
	h.createUser("deploy-bot", 0)
	cfg := h.config("deploy-bot")
	h.runUntil(h.engine(cfg, nil), t0.Add(6*time.Minute)) // rotated once: previous key active
	if n := len(h.keys("deploy-bot")); n != 2 {
		t.Fatalf("keys mid-cycle = %d, want 2", n)
	}
	// A new process knows nothing but what AWS holds.
	b := h.engine(cfg, nil)
	h.runUntil(b, t0.Add(30*time.Minute))
	h.checkInvariants(b, "deploy-bot")
	if got := h.events.Count(keyrot.EventKeyDeleted); got < 4 {
		t.Fatalf("deleted events = %d after 30m, want >= 4", got)
	}
}

var errCrash = errors.New("injected crash")

// TestCrashAtEveryStepBoundary stops the engine at each step boundary, as a
// crash would, and lets a fresh engine take over.
func TestCrashAtEveryStepBoundary(t *testing.T) {
	points := []string{"after-intent", "after-create-key", "after-store-pending", "after-verify", "after-create",
		"after-mark-inactive", "after-deactivate", "after-delete", "after-record_inactive"}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			h := newHarness(t, sandbox.Faults{PropagationDelay: 5 * time.Second})
			h.createUser("ci-bot", 1)
			cfg := h.config("ci-bot")
			crashed := false
			hook := func(_ context.Context, at string) error {
				if at == point && !crashed {
					crashed = true
					return errCrash
				}
				return nil
			}
			a := h.engine(cfg, hook)
			for i := 0; i < 50 && !crashed; i++ {
				sum, err := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !crashed && !sum.NextAt.IsZero() {
					h.clock.Set(sum.NextAt)
				}
			}
			if !crashed && point != "after-record_inactive" {
				t.Fatalf("never reached %s", point)
			}
			b := h.engine(cfg, nil)
			h.runUntil(b, h.clock.Now().Add(20*time.Minute))
			h.checkInvariants(b, "ci-bot")
		})
	}
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
	h := newHarness(t, sandbox.Faults{})
	h.createUser("ci-bot", 0)
	cfg := h.config("ci-bot")
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
		if n := len(h.keys("ci-bot")); n > 2 {
			t.Fatalf("round %d: %d keys", round, n)
		}
		h.clock.Advance(time.Minute)
	}
	h.runUntil(a, h.clock.Now().Add(20*time.Minute))
	h.checkInvariants(a, "ci-bot")
}

func TestDryRunChangesNothing(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	h.createUser("ci-bot", 2)
	before := h.keys("ci-bot")
	a := h.engine(h.config("ci-bot"), nil)
	h.clock.Advance(3 * time.Minute) // both keys idle: one is due to be deactivated
	sum := h.pass(a, keyrot.RunOptions{DryRun: true, Force: true})
	if len(sum.Results[0].Planned) == 0 {
		t.Fatal("dry run planned nothing for a user with two foreign keys")
	}
	after := h.keys("ci-bot")
	if len(after) != len(before) || after[0].Status != before[0].Status || after[1].Status != before[1].Status {
		t.Fatalf("dry run changed keys: %v -> %v", before, after)
	}
	if _, err := a.Store.Current(context.Background(), "ci-bot"); !errors.Is(err, keyrot.ErrSecretNotFound) {
		t.Fatalf("dry run wrote a secret: %v", err)
	}
}

func TestExemptAndMissingUsers(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	h.createUser("ci-bot", 0)
	h.createUser("break-glass", 0)
	h.createUser("legacy", 0)
	if _, err := h.iam.CreateGroup(ctx, &awsiam.CreateGroupInput{GroupName: aws.String("keyrot-exempt")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.iam.AddUserToGroup(ctx, &awsiam.AddUserToGroupInput{GroupName: aws.String("keyrot-exempt"), UserName: aws.String("break-glass")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.iam.TagUser(ctx, &awsiam.TagUserInput{UserName: aws.String("legacy"), Tags: []iamtypes.Tag{{Key: aws.String("keyrot:exempt"), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}
	cfg := h.config("ci-bot", "break-glass", "legacy", "gone")
	cfg.Users.ExemptGroup, cfg.Users.ExemptTag = "keyrot-exempt", "keyrot:exempt=true"
	sum := h.pass(h.engine(cfg, nil), keyrot.RunOptions{})
	byUser := map[string]keyrot.UserResult{}
	for _, r := range sum.Results {
		byUser[r.User] = r
	}
	if !byUser["break-glass"].Exempt || !byUser["legacy"].Exempt || byUser["ci-bot"].Exempt {
		t.Fatalf("exemptions wrong: %+v", sum.Results)
	}
	if len(h.keys("break-glass")) != 0 || len(h.keys("legacy")) != 0 {
		t.Fatal("exempt users got keys")
	}
	if w := byUser["gone"].Warnings; len(w) != 1 || w[0].Warning != keyrot.WarnUserDeleted {
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
	h.createUser("ci-bot", 0)
	a := h.engine(h.config("ci-bot"), nil)
	h.pass(a, keyrot.RunOptions{})
	cur := h.checkInvariants(a, "ci-bot")
	// The pipeline reads its next key with its current one (resource policy).
	userCfg := sandboxtest.UserConfig(t, h.sb, cur.AccessKeyID, cur.SecretAccessKey)
	store := secretsmanager.New(awssm.NewFromConfig(userCfg), secretsmanager.Config{})
	got, err := store.Current(context.Background(), "ci-bot")
	if err != nil {
		t.Fatalf("user reading its own secret: %v", err)
	}
	if got.AccessKeyID != cur.AccessKeyID {
		t.Fatalf("read %s, want %s", got.AccessKeyID, cur.AccessKeyID)
	}
	if _, err := store.Current(context.Background(), "someone-else"); err == nil || strings.Contains(err.Error(), cur.SecretAccessKey) {
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
