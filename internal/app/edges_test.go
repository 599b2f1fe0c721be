package app_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// keyHistory follows keys across passes: when each was last seen Active,
// first seen Inactive, and first seen gone.
type keyHistory struct {
	inactiveFrom, goneAt map[string]time.Time
	known                map[string]bool
}

func newKeyHistory() *keyHistory {
	return &keyHistory{inactiveFrom: map[string]time.Time{}, goneAt: map[string]time.Time{}, known: map[string]bool{}}
}

func (kh *keyHistory) observe(now time.Time, keys []iamtypes.AccessKeyMetadata) {
	present := map[string]bool{}
	for _, k := range keys {
		id := aws.ToString(k.AccessKeyId)
		present[id], kh.known[id] = true, true
		if k.Status == iamtypes.StatusTypeInactive {
			if _, ok := kh.inactiveFrom[id]; !ok {
				kh.inactiveFrom[id] = now
			}
		}
	}
	for id := range kh.known {
		if _, gone := kh.goneAt[id]; !present[id] && !gone {
			kh.goneAt[id] = now
		}
	}
}

// checkNoAbruptDeletion fails if a key disappeared without having been seen
// Inactive for delete_after first.
func (kh *keyHistory) checkNoAbruptDeletion(t *testing.T, deleteAfter time.Duration) {
	t.Helper()
	for id, gone := range kh.goneAt {
		from, ok := kh.inactiveFrom[id]
		if !ok || gone.Sub(from) < deleteAfter {
			t.Errorf("key %s deleted at %v, inactive since %v (seen: %v): less than delete_after", id, gone, from, ok)
		}
	}
}

// runPasses runs passes from one due time to the next until the given
// time, observing keys after each; failed users do not stop it.
func (h *harness) runPasses(a interface {
	ReconcileAll(context.Context, keyrot.RunOptions) (keyrot.Summary, error)
}, user string, until time.Time, kh *keyHistory) (failed int) {
	h.t.Helper()
	for h.clock.Now().Before(until) {
		sum, err := a.ReconcileAll(context.Background(), keyrot.RunOptions{})
		if err != nil {
			h.t.Fatalf("reconcile: %v", err)
		}
		failed += sum.Failed
		kh.observe(h.clock.Now(), h.keys(user))
		next := h.clock.Now().Add(15 * time.Second) // the daemon's resync and retry cadence
		if !sum.NextAt.IsZero() && sum.NextAt.Before(next) && sum.NextAt.After(h.clock.Now()) {
			next = sum.NextAt
		}
		h.clock.Set(next)
	}
	return failed
}

// The README's adopt case: a user with two keys keyrot did not create, one
// in use and one idle, and no secret yet. keyrot waits until the idle key
// has been idle for deactivate_after, deactivates it (creating the secret
// that records it), deletes it after delete_after, then makes its own key
// current and retires the key in use on the normal timings. No pass fails.
func TestAdoptTwoUnmanagedKeysOneInUse(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	if _, err := h.iam.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var inUse *sts.Client
	for i := range 2 {
		out, err := h.iam.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String("ci-bot")})
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.AccessKey.AccessKeyId)
		ids, h.foreign[id] = append(ids, id), true
		if i == 1 {
			inUse = sts.NewFromConfig(sandboxtest.UserConfig(t, h.sb, id, aws.ToString(out.AccessKey.SecretAccessKey)))
		}
	}
	idle, busy := ids[0], ids[1]
	a := h.engine(h.config("ci-bot"), nil)
	kh := newKeyHistory()
	start := h.clock.Now()
	failed := 0
	for h.clock.Now().Before(start.Add(15 * time.Minute)) {
		// The program using the busy key calls AWS every few seconds
		// until keyrot's key is current (it then switches).
		if st, _ := a.Store.Load(ctx, "ci-bot"); st.Current == nil {
			if _, err := inUse.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
				t.Fatalf("the key in use stopped working before keyrot had a key to switch to: %v", err)
			}
		}
		failed += h.runPasses(a.Rotator, "ci-bot", h.clock.Now().Add(20*time.Second), kh)
	}
	if failed != 0 {
		t.Errorf("%d failed user passes, want none", failed)
	}
	cur := h.checkInvariants(a, "ci-bot")
	if cur.AccessKeyID == idle || cur.AccessKeyID == busy {
		t.Fatalf("current key %s is not keyrot's", cur.AccessKeyID)
	}
	if _, ok := kh.goneAt[idle]; !ok {
		t.Errorf("idle key %s never deleted", idle)
	}
	if kh.inactiveFrom[idle].Before(start.Add(2 * time.Minute)) {
		t.Errorf("idle key deactivated at %v, before it was idle for deactivate_after", kh.inactiveFrom[idle])
	}
	kh.checkNoAbruptDeletion(t, keyrot.DefaultPolicy().DeleteAfter)
	for _, e := range h.events.Events() {
		if e.Kind == keyrot.EventRotationFailed {
			t.Errorf("FAILED event: %s %s", e.Summary, e.Err)
		}
	}
	if got := h.events.Count(keyrot.EventWarning); got > 2 {
		t.Errorf("%d warnings, want at most the key_limit wait and one key in use", got)
	}
}

// An ambiguous CreateAccessKey failure (IAM's 5xx after every retry: the
// key may or may not exist) followed by an administrator creating a key for
// the user in that window: keyrot cannot prove the new key is not its own,
// so it never deletes it as an orphan. Under report it keeps it untouched;
// under adopt it tells the admin, deactivates it no sooner than
// deactivate_after from when it first saw it, and deletes it no sooner than
// delete_after later.
func TestAmbiguousCreateThenAdminKey(t *testing.T) {
	for _, policy := range []string{"report", "adopt"} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, sandbox.Faults{})
			ctx := context.Background()
			h.createUser("ci-bot", 0)
			cfg := h.config("ci-bot")
			cfg.Rotation.UnmanagedKeys = policy
			a := h.engine(cfg, nil)
			h.pass(a, keyrot.RunOptions{})
			first := h.checkInvariants(a, "ci-bot")
			h.clock.Set(first.CreateDate.Add(5 * time.Minute))

			intentAt := h.clock.Now()
			h.sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: "CreateAccessKey", Kind: sandbox.Fault5xx, Count: 3}}})
			if sum, _ := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{}); sum.Failed != 1 {
				t.Fatalf("failed = %d, want the ambiguous create to fail the pass", sum.Failed)
			}
			h.sb.SetFaults(sandbox.Faults{})
			h.clock.Advance(30 * time.Second)
			out, err := h.iam.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String("ci-bot")})
			if err != nil {
				t.Fatal(err)
			}
			admin := aws.ToString(out.AccessKey.AccessKeyId)
			h.foreign[admin] = true

			kh := newKeyHistory()
			afterGrace := intentAt.Add(keyrot.DefaultPolicy().OrphanGrace)
			// The create's intent is given up at the end of orphan_grace; from
			// then on the admin's key is a key keyrot did not create.
			if failed := h.runPasses(a.Rotator, "ci-bot", afterGrace.Add(10*time.Minute), kh); failed != 0 {
				t.Errorf("%d failed passes after the ambiguous create", failed)
			}
			kh.checkNoAbruptDeletion(t, keyrot.DefaultPolicy().DeleteAfter)
			keys := h.keys("ci-bot")
			hasAdmin := slices.ContainsFunc(keys, func(k iamtypes.AccessKeyMetadata) bool { return aws.ToString(k.AccessKeyId) == admin })
			switch policy {
			case "report":
				if !hasAdmin || kh.inactiveFrom[admin] != (time.Time{}) {
					t.Errorf("admin's key %s touched under report: keys %v", admin, keys)
				}
			case "adopt":
				if from := kh.inactiveFrom[admin]; !from.IsZero() && from.Before(afterGrace.Add(keyrot.DefaultPolicy().DeactivateAfter)) {
					t.Errorf("admin's key deactivated at %v, before deactivate_after from the end of orphan_grace (%v)", from, afterGrace)
				}
				if hasAdmin && kh.inactiveFrom[admin].IsZero() {
					t.Errorf("admin's key %s still active 10 minutes after orphan_grace under adopt", admin)
				}
			}
			told := false
			for _, e := range h.events.Events() {
				told = told || (e.Kind == keyrot.EventWarning && e.KeyID == admin)
			}
			if !told {
				t.Errorf("nobody was told about key %s", admin)
			}
		})
	}
}

// A PutSecretValue that took effect but whose response was lost, then
// failures past every retry: keyrot sets the unstored key aside and gives
// the rotation up. The stale pending version keeps its version token, so
// the next rotation must take a new generation; it ends with a new current
// key, and nothing is deleted abruptly.
func TestLostPutSecretValueResponse(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	h.createUser("ci-bot", 0)
	a := h.engine(h.config("ci-bot"), nil)
	h.pass(a, keyrot.RunOptions{})
	first := h.checkInvariants(a, "ci-bot")
	h.clock.Set(first.CreateDate.Add(5 * time.Minute))

	h.sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{
		{Operation: "PutSecretValue", Kind: sandbox.FaultLostResponse, Count: 1},
		{Operation: "PutSecretValue", Kind: sandbox.Fault5xx, Count: 1000},
	}})
	if sum, _ := a.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{}); sum.Failed != 1 {
		t.Fatalf("failed = %d, want the store to fail the pass", sum.Failed)
	}
	h.sb.SetFaults(sandbox.Faults{})
	kh := newKeyHistory()
	if failed := h.runPasses(a.Rotator, "ci-bot", h.clock.Now().Add(12*time.Minute), kh); failed != 0 {
		t.Errorf("%d failed passes after the lost response: the user is stuck", failed)
	}
	cur := h.checkInvariants(a, "ci-bot")
	if cur.AccessKeyID == first.AccessKeyID {
		t.Errorf("current key is still %s: no rotation since the lost response", cur.AccessKeyID)
	}
	if cur.Generation < 3 {
		t.Errorf("current generation %d: the abandoned generation 2 was reused", cur.Generation)
	}
	kh.checkNoAbruptDeletion(t, keyrot.DefaultPolicy().DeleteAfter)
}
