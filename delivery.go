package keyrot

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Deliverer puts a user's current key where it is used (implemented by
// packages github and gitlab: CI/CD secrets and variables).
type Deliverer interface {
	// Deliver stores creds at the target, replacing the key it held. It is
	// safe to repeat. Errors never include the secret access key.
	Deliver(ctx context.Context, creds Credentials) error
}

// DeliveryTarget is one place outside AWS that carries users' keys. The
// previous key of a user the target carries is deactivated only once the
// target confirmed its successor.
type DeliveryTarget struct {
	// ID names the target in the records on each user's secret, in events
	// and in metrics: stable across restarts, free of secrets, at most 100
	// of letters, digits and " +-=._:/@" (Secrets Manager's tag keys).
	ID string
	// Users are the IAM users whose keys the target carries: names or
	// path.Match globs ("ci-*"). Empty: none.
	Users     []string
	Deliverer Deliverer
}

// Carries reports whether the target holds user's key.
func (t DeliveryTarget) Carries(user string) bool {
	return slices.ContainsFunc(t.Users, func(p string) bool {
		ok, err := path.Match(p, user)
		return p == user || (err == nil && ok)
	})
}

// targetsFor lists the ids of the targets that carry user's key, in the
// configured order.
func (r *Rotator) targetsFor(user string) []string {
	var ids []string
	for _, t := range r.cfg.Targets {
		if t.Carries(user) {
			ids = append(ids, t.ID)
		}
	}
	return ids
}

// planDeliveries plans a deliver step for each target that has not
// confirmed the current key, and returns their ids.
func planDeliveries(plan *Plan, o Observation, cur *StoredKey) []string {
	var pending []string
	for _, id := range o.Targets {
		if o.Secret.Delivered[id].KeyID == cur.KeyID {
			continue
		}
		pending = append(pending, id)
		plan.add(Step{Kind: StepDeliver, KeyID: cur.KeyID, Target: id, Reason: "target " + id + " has not confirmed the current key"})
	}
	return pending
}

// holdForDelivery decides whether an active key on its way out stays active
// because a target has not confirmed its successor. A hold begins when the
// deactivation falls due and lasts SyncMaxHold (default: until the next
// rotation is due); then SyncOnFailure holds on (reported) or lets the
// deactivation go ahead (reported). It returns whether the key is held and
// when it will be gone at the earliest.
func holdForDelivery(plan *Plan, k AccessKey, s SecretState, p Policy, now, since, rotateAt time.Time, undelivered []string) (bool, time.Time) {
	if len(undelivered) == 0 || k.Status != KeyActive {
		return false, time.Time{}
	}
	deactivateAt := since.Add(p.DeactivateAfter)
	if now.Before(deactivateAt) {
		return false, time.Time{} // not due yet: the targets have until then
	}
	until := rotateAt
	if p.SyncMaxHold > 0 {
		until = deactivateAt.Add(p.SyncMaxHold)
	}
	until = later(until, deactivateAt)
	targets := strings.Join(undelivered, ", ")
	held := Retirement{DeactivateAt: until, DeleteAt: until.Add(p.DeleteAfter), Adopted: !s.Owns(k.ID), HeldFor: undelivered}
	if now.Before(until) {
		plan.schedule(until, "deactivate key "+k.ID+" (held for "+targets+")")
		plan.retire(k.ID, held)
		return true, held.DeleteAt
	}
	if p.SyncOnFailure == SyncProceed {
		plan.warn(WarnSyncHoldExpired, k.ID, fmt.Sprintf("key %s was held active until %s (sync.max_hold) because %s did not confirm the current key; it is deactivated anyway (sync.on_failure: proceed): whatever reads the key from %s now fails until it gets the current key",
			k.ID, until.UTC().Format(time.RFC3339), targets, targets))
		return false, time.Time{}
	}
	plan.warn(WarnSyncHoldExpired, k.ID, fmt.Sprintf("key %s stays active past %s (sync.max_hold, sync.on_failure: hold) because %s did not confirm the current key; rotation waits until it does",
		k.ID, until.UTC().Format(time.RFC3339), targets))
	held.DeactivateAt, held.DeleteAt = now, now.Add(p.DeleteAfter)
	plan.retire(k.ID, held)
	return true, held.DeleteAt
}

// DefaultSyncRetry is how soon a user is looked at again after a delivery
// failed (RotatorConfig.SyncRetry).
const DefaultSyncRetry = 30 * time.Second

// TargetState is a delivery target's state for one user, for status views.
type TargetState struct {
	Target string
	// KeyID is the key the target last confirmed ("" if none).
	KeyID string
	// Confirmed reports that KeyID is the current key.
	Confirmed bool
	// FailingSince is when a reported failure incident began (zero: none),
	// and Err the last failure this process saw (redacted).
	FailingSince time.Time
	Err          string
}

// targetStates describes each target carrying the user's key.
func (r *Rotator) targetStates(o Observation) []TargetState {
	var out []TargetState
	for _, id := range o.Targets {
		d := o.Secret.Delivered[id]
		ts := TargetState{Target: id, KeyID: d.KeyID, FailingSince: d.FailingSince,
			Confirmed: d.KeyID != "" && o.Secret.Current != nil && d.KeyID == o.Secret.Current.KeyID}
		r.mu.Lock()
		if inc := r.deliveries[o.User.Name+"/"+id]; inc != nil {
			ts.Err = inc.err
			if ts.FailingSince.IsZero() {
				ts.FailingSince = inc.since
			}
		}
		r.mu.Unlock()
		out = append(out, ts)
	}
	return out
}

// errDeliveryFailed marks a deliver step whose target failed: not a failed
// pass (the delivery has its own incident), and not a step done.
var errDeliveryFailed = errors.New("delivery failed")

// deliver pushes the current key to one target and records its
// confirmation on the secret. A failing target is not a failed pass: it is
// retried on every pass, reported once per incident, and holds the
// previous key (the planner's part); it returns errDeliveryFailed.
func (r *Rotator) deliver(ctx context.Context, u User, obs Observation, st Step) error {
	i := slices.IndexFunc(r.cfg.Targets, func(t DeliveryTarget) bool { return t.ID == st.Target })
	if i < 0 {
		return fmt.Errorf("deliver to %s: no such target in the configuration", st.Target)
	}
	creds, err := r.cfg.Secrets.Current(ctx, u.Name)
	if err != nil {
		return fmt.Errorf("deliver to %s: read the current key: %w", st.Target, err)
	}
	if creds.AccessKeyID != st.KeyID {
		return fmt.Errorf("deliver to %s: the secret holds key %s, not %s (promoted meanwhile); the next pass delivers it", st.Target, creds.AccessKeyID, st.KeyID)
	}
	record := obs.Secret.Delivered[st.Target]
	err = r.cfg.Targets[i].Deliverer.Deliver(ctx, creds)
	if r.cfg.OnDelivery != nil {
		r.cfg.OnDelivery(st.Target, err)
	}
	if err != nil {
		r.deliveryFailed(ctx, u, st, record, err)
		return errDeliveryFailed
	}
	if err := r.cfg.Secrets.MarkDelivery(ctx, u.Name, st.Target, Delivery{KeyID: st.KeyID}); err != nil {
		return fmt.Errorf("deliver to %s: record that it confirmed key %s (the next pass delivers again): %w", st.Target, st.KeyID, err)
	}
	r.log.Info("key delivered", "user", u.Name, "key_id", st.KeyID, "target", st.Target)
	r.deliveryRecovered(ctx, u, st, record)
	return nil
}

// deliveryFailed counts a failed delivery and tells of it once per
// incident, when it has lasted FailureThreshold attempts or FailureWindow;
// the incident is recorded on the secret so a restart does not tell it
// again.
func (r *Rotator) deliveryFailed(ctx context.Context, u User, st Step, record Delivery, err error) {
	now := r.cfg.Clock.Now()
	msg := RedactSecrets(err.Error())
	key := u.Name + "/" + st.Target
	r.mu.Lock()
	if r.deliveries == nil {
		r.deliveries = map[string]*incident{}
	}
	inc := r.deliveries[key]
	if inc == nil {
		inc = &incident{since: now}
		if !record.FailingSince.IsZero() {
			inc.since, inc.reported = record.FailingSince, true // told before a restart
		}
		r.deliveries[key] = inc
	}
	inc.failures++
	inc.err = msg
	due := !inc.reported && (inc.failures >= r.cfg.FailureThreshold || now.Sub(inc.since) >= r.cfg.FailureWindow)
	if due {
		inc.reported = true
	}
	failures, since := inc.failures, inc.since
	r.mu.Unlock()

	attrs := []any{"user", u.Name, "key_id", st.KeyID, "target", st.Target, "error", msg, "failures", failures}
	if !due {
		r.log.Warn("delivery failed; the next pass retries", attrs...)
		return
	}
	r.emit(ctx, u, Event{Kind: EventSyncFailed, KeyID: st.KeyID, Target: st.Target, Err: msg,
		Summary: fmt.Sprintf("delivering key %s of %s to %s has failed %d times since %s", st.KeyID, u.Name, st.Target, failures, since.UTC().Format(time.RFC3339)),
		Next:    "keyrot retries on every pass, keeps the previous key active meanwhile (up to sync.max_hold), and says when delivery works again"})
	record.FailingSince = since
	if err := r.cfg.Secrets.MarkDelivery(context.WithoutCancel(ctx), u.Name, st.Target, record); err != nil {
		r.log.Warn("record reported delivery failure", "user", u.Name, "target", st.Target, "error", err)
	}
}

// deliveryRecovered ends the target's failure incident, telling of it if
// the failure was told.
func (r *Rotator) deliveryRecovered(ctx context.Context, u User, st Step, record Delivery) {
	key := u.Name + "/" + st.Target
	r.mu.Lock()
	inc := r.deliveries[key]
	delete(r.deliveries, key)
	r.mu.Unlock()
	tell := !record.FailingSince.IsZero() || (inc != nil && inc.reported)
	if !tell {
		return
	}
	since := record.FailingSince
	if inc != nil {
		since = inc.since
	}
	r.emit(ctx, u, Event{Kind: EventSyncRecovered, KeyID: st.KeyID, Target: st.Target,
		Summary: fmt.Sprintf("%s confirmed key %s of %s: delivery works again (failing since %s)", st.Target, st.KeyID, u.Name, since.UTC().Format(time.RFC3339))})
}

// deliveryRetryAt is when a user with a failing delivery is looked at
// again (zero if none is failing).
func (r *Rotator) deliveryRetryAt(user string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.deliveries {
		if strings.HasPrefix(key, user+"/") {
			return r.cfg.Clock.Now().Add(r.cfg.SyncRetry)
		}
	}
	return time.Time{}
}
