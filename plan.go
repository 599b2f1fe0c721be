package keyrot

import (
	"fmt"
	"slices"
	"time"
)

// Observation is everything keyrot knows about one user at one moment: what
// IAM says about the user's keys and what Secrets Manager says about its ring.
type Observation struct {
	User User
	// UserMissing reports that IAM has no such user.
	UserMissing bool
	// Keys are the user's access keys, oldest first.
	Keys []AccessKey
	// LastUsed holds GetAccessKeyLastUsed for the keys it was needed for.
	LastUsed map[string]time.Time
	Secret   SecretState
}

// StepKind names one action of a plan.
type StepKind string

// The steps a plan is made of.
const (
	// StepCreate creates a key, stores it as pending, verifies and promotes it.
	StepCreate StepKind = "create"
	// StepPromote verifies the pending key of an interrupted rotation and promotes it.
	StepPromote StepKind = "promote"
	// StepDeactivate records the time, then sets a key Inactive.
	StepDeactivate StepKind = "deactivate"
	// StepRecordInactive records when a key found Inactive was first seen so.
	StepRecordInactive StepKind = "record_inactive"
	// StepDelete deletes an Inactive key whose time has come.
	StepDelete StepKind = "delete"
	// StepDeleteOrphan deletes a key keyrot created but never stored.
	StepDeleteOrphan StepKind = "delete_orphan"
	// StepClearIntent drops an interrupted rotation's intent.
	StepClearIntent StepKind = "clear_intent"
	// StepForget drops records about a key IAM no longer has.
	StepForget StepKind = "forget"
)

// Step is one action due now.
type Step struct {
	Kind    StepKind
	KeyID   string
	Intent  Intent     // StepCreate
	Pending *StoredKey // StepPromote
	Reason  string
}

// Plan is what to do for one user now, and when to look again.
type Plan struct {
	User  string
	Steps []Step
	// Warnings are conditions to report (not errors: nothing failed).
	Warnings []Event
	// NextAt is when the next step falls due (zero: nothing scheduled);
	// Next says what it is.
	NextAt time.Time
	Next   string
}

func (p *Plan) schedule(at time.Time, what string) {
	if p.NextAt.IsZero() || at.Before(p.NextAt) {
		p.NextAt, p.Next = at, what
	}
}

func (p *Plan) warn(kind WarningKind, keyID, summary string) {
	p.Warnings = append(p.Warnings, Event{Kind: EventWarning, Warning: kind, User: p.User, KeyID: keyID, Summary: summary})
}

func (p *Plan) add(s Step) { p.Steps = append(p.Steps, s) }

// PlanUser is the pure heart of keyrot: from an observation, the policy and
// the time it decides which steps are due now and when the next one is. It
// never deletes a key keyrot cannot show it owns (its current, its previous,
// one it recorded as deactivated, one it created and never stored) unless
// the policy adopts unmanaged keys, and even then only after deactivating it
// and waiting DeleteAfter. force asks for a rotation now.
func PlanUser(o Observation, p Policy, now time.Time, force bool) Plan {
	plan := Plan{User: o.User.Name}
	if o.UserMissing {
		plan.warn(WarnUserDeleted, "", fmt.Sprintf("IAM user %q no longer exists; its secret is kept; remove the user from keyrot's config or recreate it", o.User.Name))
		return plan
	}
	s := o.Secret
	keys := make(map[string]AccessKey, len(o.Keys))
	for _, k := range o.Keys {
		keys[k.ID] = k
	}

	// An interrupted rotation comes first: finish it or clean it up.
	if s.Intent != nil {
		if s.Pending != nil && s.Pending.Generation == s.Intent.Generation {
			if _, ok := keys[s.Pending.KeyID]; ok {
				plan.add(Step{Kind: StepPromote, KeyID: s.Pending.KeyID, Pending: s.Pending, Reason: "an interrupted rotation stored this key; verify and promote it"})
				return plan
			}
			plan.warn(WarnSecretStale, s.Pending.KeyID, fmt.Sprintf("pending key %s is no longer in IAM; dropping the unfinished rotation", s.Pending.KeyID))
			plan.add(Step{Kind: StepClearIntent, Reason: "pending key deleted outside keyrot"})
			return plan
		}
		// Nothing stored: any key created since the intent is keyrot's own,
		// lost between CreateAccessKey and the store. Give the writer (maybe
		// another keyrot still storing it) OrphanGrace before cleaning up.
		if deadline := s.Intent.At.Add(p.OrphanGrace); now.Before(deadline) {
			plan.schedule(deadline, "clean up an unfinished rotation")
			return plan
		}
		for _, k := range o.Keys {
			if !k.CreateDate.Before(s.Intent.At.Truncate(time.Second)) && !s.Owns(k.ID) {
				plan.add(Step{Kind: StepDeleteOrphan, KeyID: k.ID, Reason: "created by an interrupted rotation and never stored"})
				delete(keys, k.ID)
			}
		}
		plan.add(Step{Kind: StepClearIntent, Reason: "unfinished rotation cleaned up"})
		return plan
	}

	// Records of keys IAM no longer has.
	for _, id := range sortedKeys(s.Inactive) {
		if _, ok := keys[id]; !ok {
			plan.add(Step{Kind: StepForget, KeyID: id, Reason: "key no longer in IAM"})
		}
	}

	cur := s.Current
	if cur != nil {
		if _, ok := keys[cur.KeyID]; !ok {
			plan.warn(WarnSecretStale, cur.KeyID, fmt.Sprintf("the secret holds key %s, which IAM no longer has; creating a new key", cur.KeyID))
			cur = nil
		}
	}
	nextGen := Intent{Generation: s.generation() + 1}
	nextGen.Member = nextGen.Generation % p.RingSize()

	if cur == nil {
		planWithoutCurrent(&plan, o, p, now, keys, nextGen)
		return plan
	}

	since := s.CurrentSince
	if since.IsZero() {
		since = cur.CreateDate
	}
	rotateAt := cur.CreateDate.Add(p.RotateEvery)
	if k := keys[cur.KeyID]; k.Status == KeyInactive {
		plan.warn(WarnCurrentInactive, cur.KeyID, fmt.Sprintf("current key %s was deactivated outside keyrot; it is not re-enabled; rotating now", cur.KeyID))
		force = true
	}

	others := 0
	waitingFor := time.Time{}
	for _, k := range o.Keys {
		if k.ID == cur.KeyID {
			continue
		}
		others++
		if !s.Owns(k.ID) && p.UnmanagedKeys == ReportUnmanaged {
			plan.warn(WarnUnmanagedKey, k.ID, fmt.Sprintf("key %s was not created by keyrot and is left alone (unmanaged_keys: report)", k.ID))
			continue
		}
		at := retireKey(&plan, k, s, p, now, since)
		if !at.IsZero() && (waitingFor.IsZero() || at.After(waitingFor)) {
			waitingFor = at
		}
	}

	switch {
	case !force && now.Before(rotateAt):
		plan.schedule(rotateAt, "rotate: create a new key")
	case others == 0:
		nextGen.At = now
		plan.add(Step{Kind: StepCreate, Intent: nextGen, Reason: rotateReason(force, cur, now)})
	case !waitingFor.IsZero():
		// The previous key is still on its way out; rotate once it is gone.
		// Never delete it early to make room.
		plan.schedule(waitingFor, "rotate once the previous key is deleted")
	default:
		plan.warn(WarnKeyLimit, "", fmt.Sprintf("user %q has two keys and one was not created by keyrot; delete it to let rotation continue", o.User.Name))
	}
	return plan
}

func rotateReason(force bool, cur *StoredKey, now time.Time) string {
	if force {
		return "rotation forced"
	}
	return fmt.Sprintf("current key %s is %s old", cur.KeyID, FormatDuration(now.Sub(cur.CreateDate).Truncate(time.Second)))
}

// retireKey plans the way out for a key that is not current: deactivate it
// DeactivateAfter after its successor became current, delete it DeleteAfter
// after it became inactive. It returns when the key will be gone (now, if a
// step removing it is due now).
func retireKey(plan *Plan, k AccessKey, s SecretState, p Policy, now, since time.Time) time.Time {
	if k.Status == KeyActive {
		deactivateAt := since.Add(p.DeactivateAfter)
		if now.Before(deactivateAt) {
			plan.schedule(deactivateAt, "deactivate key "+k.ID)
			return deactivateAt.Add(p.DeleteAfter)
		}
		plan.add(Step{Kind: StepDeactivate, KeyID: k.ID, Reason: "superseded by the current key"})
		return now.Add(p.DeleteAfter)
	}
	inactiveSince, ok := s.Inactive[k.ID]
	if !ok {
		plan.add(Step{Kind: StepRecordInactive, KeyID: k.ID, Reason: "found inactive without a record"})
		return now.Add(p.DeleteAfter)
	}
	deleteAt := inactiveSince.Add(p.DeleteAfter)
	if now.Before(deleteAt) {
		plan.schedule(deleteAt, "delete key "+k.ID)
		return deleteAt
	}
	plan.add(Step{Kind: StepDelete, KeyID: k.ID, Reason: "inactive for " + FormatDuration(p.DeleteAfter)})
	return now
}

// planWithoutCurrent handles a user with no working keyrot key: a new user,
// one whose keys were all created elsewhere, or one whose secret went stale.
func planWithoutCurrent(plan *Plan, o Observation, p Policy, now time.Time, keys map[string]AccessKey, next Intent) {
	if len(keys) < 2 {
		next.At = now
		plan.add(Step{Kind: StepCreate, Intent: next, Reason: "no current keyrot key"})
		return
	}
	if p.UnmanagedKeys == ReportUnmanaged {
		plan.warn(WarnKeyLimit, "", fmt.Sprintf("user %q has two keys keyrot did not create (unmanaged_keys: report); delete one to let keyrot rotate the user", o.User.Name))
		return
	}
	// adopt: make room without deleting anything abruptly. An inactive key
	// goes first, after DeleteAfter; with two active keys the least
	// recently used one is deactivated now and deleted later.
	var inactive, active []AccessKey
	for _, k := range o.Keys {
		if k.Status == KeyInactive {
			inactive = append(inactive, k)
		} else {
			active = append(active, k)
		}
	}
	if len(inactive) > 0 {
		for _, k := range inactive {
			retireKey(plan, k, o.Secret, p, now, now)
		}
		return
	}
	slices.SortStableFunc(active, func(a, b AccessKey) int {
		if c := o.LastUsed[a.ID].Compare(o.LastUsed[b.ID]); c != 0 {
			return c
		}
		return a.CreateDate.Compare(b.CreateDate)
	})
	plan.add(Step{Kind: StepDeactivate, KeyID: active[0].ID, Reason: "two keys keyrot did not create: deactivating the least recently used to make room"})
}

// Owns reports whether keyrot's records name the key: its current, pending
// or previous key, or one it recorded as deactivated.
func (s SecretState) Owns(id string) bool {
	if s.Current != nil && s.Current.KeyID == id {
		return true
	}
	if s.Pending != nil && s.Pending.KeyID == id {
		return true
	}
	if id == s.PreviousKeyID {
		return true
	}
	_, ok := s.Inactive[id]
	return ok
}

func (s SecretState) generation() int {
	g := s.Generation
	if s.Current != nil && s.Current.Generation > g {
		g = s.Current.Generation
	}
	if s.Intent != nil && s.Intent.Generation > g {
		g = s.Intent.Generation
	}
	return g
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
