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
	// Targets are the ids of the delivery targets that carry the user's
	// key (from the configuration): the previous key waits for each to
	// confirm the current one.
	Targets []string
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
	// StepRecordSeen records when keyrot first saw a key it did not create.
	StepRecordSeen StepKind = "record_seen"
	// StepDelete deletes a key that has been Inactive for DeleteAfter.
	StepDelete StepKind = "delete"
	// StepClearIntent drops an interrupted rotation's intent.
	StepClearIntent StepKind = "clear_intent"
	// StepForget drops records about a key IAM no longer has.
	StepForget StepKind = "forget"
	// StepRecordTimings stores the policy's timings for readers of the
	// current key, after the policy changed.
	StepRecordTimings StepKind = "record_timings"
	// StepReport tells of a key event recorded with its change but not
	// yet reported (a crash came in between).
	StepReport StepKind = "report"
	// StepDeliver pushes the current key to a delivery target (Step.Target)
	// and records its confirmation.
	StepDeliver StepKind = "deliver"
)

// Step is one action due now.
type Step struct {
	Kind    StepKind
	KeyID   string
	Intent  Intent     // StepCreate
	Pending *StoredKey // StepPromote
	// Report is the event the step tells of: for StepReport, and for a
	// StepForget of a key keyrot had deactivated (its deletion).
	Report EventKind
	// Target is the delivery target of a StepDeliver.
	Target string
	Reason string
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
	// Retiring says, for each key on its way out, when keyrot will
	// deactivate and delete it as planned now: the schedule a person
	// reviewing the user sees. A key keyrot leaves alone (unmanaged_keys:
	// report) has no entry.
	Retiring map[string]Retirement
}

// Retirement is a key's way out as planned: deactivated at DeactivateAt
// (zero if it is already inactive), deleted at DeleteAt. A time at or before
// the plan's now means the step is due now.
type Retirement struct {
	DeactivateAt time.Time
	DeleteAt     time.Time
	// InactiveSince is when keyrot deactivated the key or first saw it
	// inactive (zero while it is active, or before keyrot recorded it).
	InactiveSince time.Time
	// Adopted marks a key keyrot did not create, rotated out on its timings.
	Adopted bool
	// HeldFor lists the delivery targets that have not confirmed the
	// current key, while the key is held active for them.
	HeldFor []string
}

func (p *Plan) retire(id string, r Retirement) {
	if p.Retiring == nil {
		p.Retiring = map[string]Retirement{}
	}
	p.Retiring[id] = r
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
// deletes only a key that has been Inactive for DeleteAfter and that keyrot
// can show it owns (its previous key, an orphan it recorded, a key it
// adopted and deactivated), and deactivates a key that is not its own only
// under the adopt policy, on the normal timings. force asks for a rotation
// now.
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
	planReports(&plan, s, keys)

	// An interrupted rotation comes first: finish it or give it up.
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
		// Nothing stored. Give the writer (maybe another keyrot still
		// storing its key) OrphanGrace, then give the rotation up. A key it
		// may have created cannot be told from a key a person created in
		// the meantime, so from then on it is treated as any key keyrot did
		// not create: reported, or adopted with deactivation first. The
		// next rotation takes a new generation, never this one's token.
		if deadline := s.Intent.At.Add(p.OrphanGrace); now.Before(deadline) {
			plan.schedule(deadline, "give up an unfinished rotation")
			return plan
		}
		plan.add(Step{Kind: StepClearIntent, Reason: "an interrupted rotation stored no key; giving it up"})
		return plan
	}

	// Records of keys IAM no longer has. A key keyrot deactivated and that
	// is now gone was deleted: by keyrot (a crash may have come between the
	// deletion and its report) or by a person; either way it is told.
	for _, id := range sortedKeys(s.Inactive) {
		if _, ok := keys[id]; !ok {
			plan.add(Step{Kind: StepForget, KeyID: id, Report: EventKeyDeleted, Reason: "key no longer in IAM"})
		}
	}
	for _, id := range sortedKeys(s.Seen) {
		if _, inactive := s.Inactive[id]; !inactive {
			if _, ok := keys[id]; !ok {
				plan.add(Step{Kind: StepForget, KeyID: id, Reason: "key no longer in IAM"})
			}
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
	if s.Timings != p.Timings() {
		// Readers must learn of a shorter rotate_every before the engine acts on it.
		plan.add(Step{Kind: StepRecordTimings, Reason: "the rotation timings changed: tell readers of the current key"})
	}
	rotateAt := cur.CreateDate.Add(p.RotateEvery)
	if k := keys[cur.KeyID]; k.Status == KeyInactive {
		plan.warn(WarnCurrentInactive, cur.KeyID, fmt.Sprintf("current key %s was deactivated outside keyrot; it is not re-enabled; rotating now", cur.KeyID))
		force = true
	}
	var undelivered []string
	if keys[cur.KeyID].Status == KeyActive {
		undelivered = planDeliveries(&plan, o, cur)
	}

	others := 0
	waitingFor := time.Time{}
	for _, k := range o.Keys {
		if k.ID == cur.KeyID {
			continue
		}
		others++
		kSince := since
		if !s.Owns(k.ID) {
			if !p.retires(s, k) {
				plan.warn(WarnUnmanagedKey, k.ID, fmt.Sprintf("key %s was not created by keyrot and is left alone (unmanaged_keys: report)", k.ID))
				continue
			}
			// A key that appeared after the current key (IAM's dates on
			// both sides) is retired counting from when keyrot first saw
			// it, so a person who just made it is told before it stops.
			if k.Status == KeyActive && k.CreateDate.After(cur.CreateDate) {
				seen, ok := s.Seen[k.ID]
				if !ok {
					seen = now
					plan.add(Step{Kind: StepRecordSeen, KeyID: k.ID, Reason: "a key keyrot did not create appeared"})
				}
				kSince = later(since, seen)
				plan.warn(WarnUnmanagedKey, k.ID, fmt.Sprintf("key %s was not created by keyrot; it is adopted: deactivated at %s and deleted %s later, unless you delete it first",
					k.ID, kSince.Add(p.DeactivateAfter).UTC().Format(time.RFC3339), FormatDuration(p.DeleteAfter)))
			}
		}
		held, at := holdForDelivery(&plan, k, s, p, now, kSince, rotateAt, undelivered)
		if !held {
			at = retireKey(&plan, k, s, p, now, kSince)
		}
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

// planReports tells of the events recorded with their change and not yet
// reported, once the change shows in IAM: a key made current, a key
// deactivated. (A deletion shows as a record of a key IAM no longer has.)
func planReports(plan *Plan, s SecretState, keys map[string]AccessKey) {
	for _, id := range sortedKeys(s.Unreported) {
		kind := s.Unreported[id]
		k, inIAM := keys[id]
		switch kind {
		case EventKeyCreated:
			if s.Current != nil && s.Current.KeyID == id {
				plan.add(Step{Kind: StepReport, KeyID: id, Report: kind, Reason: "key made current; not reported yet"})
			}
		case EventKeyDeactivated:
			if inIAM && k.Status == KeyInactive {
				plan.add(Step{Kind: StepReport, KeyID: id, Report: kind, Reason: "key deactivated; not reported yet"})
			}
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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
	adopted := !s.Owns(k.ID)
	if k.Status == KeyActive {
		deactivateAt := since.Add(p.DeactivateAfter)
		if now.Before(deactivateAt) {
			plan.schedule(deactivateAt, "deactivate key "+k.ID)
			plan.retire(k.ID, Retirement{DeactivateAt: deactivateAt, DeleteAt: deactivateAt.Add(p.DeleteAfter), Adopted: adopted})
			return deactivateAt.Add(p.DeleteAfter)
		}
		plan.add(Step{Kind: StepDeactivate, KeyID: k.ID, Reason: "superseded by the current key"})
		plan.retire(k.ID, Retirement{DeactivateAt: now, DeleteAt: now.Add(p.DeleteAfter), Adopted: adopted})
		return now.Add(p.DeleteAfter)
	}
	inactiveSince, ok := s.Inactive[k.ID]
	if !ok {
		plan.add(Step{Kind: StepRecordInactive, KeyID: k.ID, Reason: "found inactive without a record"})
		plan.retire(k.ID, Retirement{DeleteAt: now.Add(p.DeleteAfter), Adopted: adopted})
		return now.Add(p.DeleteAfter)
	}
	if inactiveSince.After(now.Add(time.Second)) {
		// Written before the deactivation as the latest moment it could
		// take effect, and not brought back after it (a crash, a failed
		// call): the key is Inactive now, so now is a safe start. (A
		// record made now is at most a second ahead: rounded up.)
		plan.add(Step{Kind: StepRecordInactive, KeyID: k.ID, Reason: "found inactive under a record written before its deactivation"})
		return now.Add(p.DeleteAfter)
	}
	deleteAt := inactiveSince.Add(p.DeleteAfter)
	plan.retire(k.ID, Retirement{DeleteAt: deleteAt, InactiveSince: inactiveSince, Adopted: adopted})
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
	// goes first, after DeleteAfter. With two active keys and no keyrot key
	// to switch to, the least recently used one is deactivated only once it
	// has been idle for DeactivateAfter; until then a person is told.
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
	lastActive := func(k AccessKey) time.Time { return later(k.CreateDate, o.LastUsed[k.ID]) }
	slices.SortStableFunc(active, func(a, b AccessKey) int {
		if c := lastActive(a).Compare(lastActive(b)); c != 0 {
			return c
		}
		return a.CreateDate.Compare(b.CreateDate)
	})
	lru := active[0]
	if idleAt := lastActive(lru).Add(p.DeactivateAfter); now.Before(idleAt) {
		plan.warn(WarnKeyLimit, lru.ID, fmt.Sprintf("user %q has two keys keyrot did not create, both used (or created) within the last %s; keyrot deactivates the less recently used one, %s, once it has been idle that long; delete one yourself to rotate sooner",
			o.User.Name, FormatDuration(p.DeactivateAfter), lru.ID))
		plan.schedule(idleAt, "deactivate key "+lru.ID+" once idle")
		plan.retire(lru.ID, Retirement{DeactivateAt: idleAt, DeleteAt: idleAt.Add(p.DeleteAfter), Adopted: true})
		return
	}
	plan.add(Step{Kind: StepDeactivate, KeyID: lru.ID, Reason: "two keys keyrot did not create: deactivating the idle, least recently used one to make room"})
	plan.retire(lru.ID, Retirement{DeactivateAt: now, DeleteAt: now.Add(p.DeleteAfter), Adopted: true})
}

// LastUseNeeded lists the keys whose last use PlanUser needs in
// Observation.LastUsed: with two active keys and neither of them current
// (two keys keyrot did not create), which one to deactivate depends on it.
// The rotator asks IAM for these and no others.
func LastUseNeeded(s SecretState, keys []AccessKey) []string {
	if len(keys) != 2 || keys[0].Status != KeyActive || keys[1].Status != KeyActive {
		return nil
	}
	if s.Current != nil && slices.ContainsFunc(keys, func(k AccessKey) bool { return k.ID == s.Current.KeyID }) {
		return nil
	}
	return []string{keys[0].ID, keys[1].ID}
}

// retires reports whether the planner retires k once another key is
// current: a key keyrot's records name, or any key under adopt.
func (p Policy) retires(s SecretState, k AccessKey) bool {
	return s.Owns(k.ID) || p.UnmanagedKeys == AdoptUnmanaged
}

// Outgoing lists the active keys that current being promoted puts on their
// way out (PlanUser retires them): what the key_created event announces.
func (p Policy) Outgoing(s SecretState, keys []AccessKey, current string) []string {
	var out []string
	for _, k := range keys {
		if k.ID != current && k.Status == KeyActive && p.retires(s, k) {
			out = append(out, k.ID)
		}
	}
	return out
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
	return max(g, s.LastIntent)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
