// How the rotator tells people: the events of each step, standing
// warnings (once per quiet period, by the record on the secret), failure
// incidents and their recovery, and the log line of each.

package keyrot

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// warn sends a standing warning unless the secret records that the same
// warning went out within WarnEvery (WarnRecord.Repeats), and records that
// it did. This record alone decides: the notifier sends what it is given.
func (r *Rotator) warn(ctx context.Context, u User, s SecretState, w Event, now time.Time) {
	rec, ok := s.Warned[w.Warning]
	unstoredKey := u.Name + "/" + string(w.Warning)
	if !s.Exists && w.Warning == WarnUserDeleted {
		r.mu.Lock()
		rec, ok = r.unstored[unstoredKey]
		r.mu.Unlock()
	}
	if ok && rec.Repeats(w.KeyID, now, r.cfg.WarnEvery) {
		r.log.Debug("warning already sent", "user", u.Name, "warning", w.Warning, "key_id", w.KeyID, "sent_at", rec.At.UTC().Format(time.RFC3339))
		return
	}
	r.emit(ctx, u, w)
	if !s.Exists && w.Warning == WarnUserDeleted {
		// No IAM user to make a secret for: this process remembers.
		r.mu.Lock()
		r.unstored[unstoredKey] = WarnRecord{KeyID: w.KeyID, At: now}
		r.mu.Unlock()
		return
	}
	if !s.Exists {
		if err := r.cfg.Secrets.Init(ctx, u); err != nil {
			r.log.Warn("create secret to record warning sent", "user", u.Name, "warning", w.Warning, "error", err)
			return
		}
	}
	if err := r.cfg.Secrets.MarkWarned(ctx, u.Name, w.Warning, w.KeyID, now); err != nil {
		r.log.Warn("record warning sent", "user", u.Name, "warning", w.Warning, "error", err)
	}
}

// clearEndedWarnings drops the records of warnings that no longer hold, so
// they are sent at once if they come back.
func (r *Rotator) clearEndedWarnings(ctx context.Context, o Observation, standing map[WarningKind]bool) {
	for kind := range o.Secret.Warned {
		if standing[kind] || kind == WarnKeyInUse {
			continue // key_in_use is told by a step, not a standing condition: a retried step must not repeat it
		}
		if err := r.cfg.Secrets.ClearWarned(context.WithoutCancel(ctx), o.User.Name, kind); err != nil {
			r.log.Warn("clear ended warning", "user", o.User.Name, "warning", kind, "error", err)
		}
	}
}

// createdEvent is the key_created event of keyID, current since
// o.Secret.CurrentSince.
func (r *Rotator) createdEvent(o Observation, keyID string) Event {
	since := o.Secret.CurrentSince
	e := Event{Kind: EventKeyCreated, KeyID: keyID, Summary: fmt.Sprintf("new access key %s is current for %s", keyID, o.User.Name)}
	if outgoing := r.cfg.Policy.Outgoing(o.Secret, o.Keys, keyID); len(outgoing) > 0 {
		e.Next, e.NextAt = fmt.Sprintf("previous key %s will be deactivated", strings.Join(outgoing, ", ")), since.Add(r.cfg.Policy.DeactivateAfter)
	} else if o.Secret.Current != nil {
		e.Next, e.NextAt = "next rotation", o.Secret.Current.CreateDate.Add(r.cfg.Policy.RotateEvery)
	}
	return e
}

// recordedEvent rebuilds an event recorded with its change and found
// unreported by a later pass.
func (r *Rotator) recordedEvent(o Observation, st Step) Event {
	switch st.Report {
	case EventKeyCreated:
		return r.createdEvent(o, st.KeyID)
	case EventKeyDeactivated:
		at := o.Secret.Inactive[st.KeyID]
		return r.deactivatedEvent(o.User.Name, st.KeyID, at, time.Time{})
	default:
		return Event{Kind: st.Report, KeyID: st.KeyID, Summary: fmt.Sprintf("%s: access key %s of %s", st.Report, st.KeyID, o.User.Name)}
	}
}

func (r *Rotator) deactivatedEvent(user, keyID string, at, lastUsed time.Time) Event {
	return Event{Kind: EventKeyDeactivated, KeyID: keyID, LastUsed: lastUsed,
		Summary: fmt.Sprintf("access key %s of %s is now inactive", keyID, user),
		Next:    fmt.Sprintf("key %s will be deleted", keyID), NextAt: at.Add(r.cfg.Policy.DeleteAfter)}
}

// report tells of a key event that was recorded as unreported with its
// change, then clears the record. An event told whose record could not be
// cleared is not told again by this process.
func (r *Rotator) report(ctx context.Context, u User, e Event) error {
	id := u.Name + "/" + string(e.Kind) + "/" + e.KeyID
	r.mu.Lock()
	told := r.told[id]
	r.told[id] = true
	r.mu.Unlock()
	if !told {
		r.emit(ctx, u, e)
	}
	if err := r.cfg.Secrets.Reported(ctx, u.Name, e.KeyID); err != nil {
		return fmt.Errorf("record %s of key %s as reported: %w", e.Kind, e.KeyID, err)
	}
	r.mu.Lock()
	delete(r.told, id)
	r.mu.Unlock()
	return nil
}

// failed counts a failed pass for the user and sends FAILED once per
// incident, when the failures have lasted past the threshold. Every
// failure is logged; a failure the next pass repairs costs no email.
// Throttling is a reason to retry later, never an incident by itself.
func (r *Rotator) failed(ctx context.Context, u User, s SecretState, keyID string, err error) {
	now := r.cfg.Clock.Now()
	throttled := IsThrottle(err)
	msg := RedactSecrets(err.Error())
	r.mu.Lock()
	inc := r.incidents[u.Name]
	if inc == nil && !throttled {
		inc = &incident{since: now}
		if !s.FailingSince.IsZero() {
			// A reported incident that a restart interrupted goes on.
			inc.since, inc.reported = s.FailingSince, true
		}
		r.incidents[u.Name] = inc
	}
	due := false
	if inc != nil {
		inc.ended = false
		if !throttled {
			inc.failures++
		}
		due = !inc.reported && inc.failures > 0 && (inc.failures >= r.cfg.FailureThreshold || now.Sub(inc.since) >= r.cfg.FailureWindow)
		if due {
			inc.reported = true
		}
	}
	failures, since := 0, now
	if inc != nil {
		failures, since = inc.failures, inc.since
	}
	r.mu.Unlock()

	attrs := []any{"user", u.Name, "error", msg, "failures", failures, "throttled", throttled}
	if keyID != "" {
		attrs = append(attrs, "key_id", keyID)
	}
	if !due {
		r.log.Warn("pass failed; the next pass retries", attrs...)
		return
	}
	r.emit(ctx, u, Event{Kind: EventRotationFailed, KeyID: keyID, Err: msg,
		Summary: fmt.Sprintf("rotation of %s has failed %d times since %s", u.Name, failures, since.UTC().Format(time.RFC3339)),
		Next:    "keyrot keeps retrying and says when it works again"})
	if s.Exists {
		if err := r.cfg.Secrets.MarkFailing(context.WithoutCancel(ctx), u.Name, since); err != nil {
			r.log.Warn("record reported failure", "user", u.Name, "error", err)
		}
	}
}

// recovered ends the user's failure incident after a pass that worked,
// telling people if they were told it failed.
func (r *Rotator) recovered(ctx context.Context, u User, s SecretState) {
	r.mu.Lock()
	inc := r.incidents[u.Name]
	if inc == nil && !s.FailingSince.IsZero() {
		inc = &incident{since: s.FailingSince, reported: true} // reported before a restart
	}
	tell := inc != nil && inc.reported && !inc.ended
	if tell {
		inc.ended = true
	}
	r.mu.Unlock()
	if inc == nil {
		return
	}
	if tell {
		r.emit(ctx, u, Event{Kind: EventRotationRecovered,
			Summary: fmt.Sprintf("rotation of %s works again (failing since %s)", u.Name, inc.since.UTC().Format(time.RFC3339))})
	}
	if !s.FailingSince.IsZero() {
		if err := r.cfg.Secrets.MarkFailing(context.WithoutCancel(ctx), u.Name, time.Time{}); err != nil {
			r.log.Warn("clear the record of an ended failure", "user", u.Name, "error", err)
			r.mu.Lock()
			r.incidents[u.Name] = inc // cleared on a later pass, not told again
			r.mu.Unlock()
			return
		}
	}
	r.mu.Lock()
	delete(r.incidents, u.Name)
	r.mu.Unlock()
}

// eventMessage is an event's log message: short and the same for every
// event of its kind (key created, rotation failed, ...); the sentence for a
// person is its summary attribute.
func eventMessage(k EventKind) string { return strings.ReplaceAll(string(k), "_", " ") }

// emit logs an event and hands it to the notifier. Events never carry secrets.
func (r *Rotator) emit(ctx context.Context, u User, e Event) {
	e.User, e.Owner = u.Name, u.Tags[r.cfg.OwnerTag]
	if e.Time.IsZero() {
		e.Time = r.cfg.Clock.Now().UTC()
	}
	attrs := []any{"event", e.Kind, "user", e.User, "summary", e.Summary}
	if e.KeyID != "" {
		attrs = append(attrs, "key_id", e.KeyID)
	}
	if !e.NextAt.IsZero() {
		attrs = append(attrs, "next", e.Next, "next_at", e.NextAt.UTC().Format(time.RFC3339))
	}
	if e.Target != "" {
		attrs = append(attrs, "target", e.Target)
	}
	switch e.Kind {
	case EventRotationFailed, EventSyncFailed:
		r.log.Error(eventMessage(e.Kind), append(attrs, "error", e.Err)...)
	case EventWarning:
		r.log.Warn(eventMessage(e.Kind), append(attrs, "warning", e.Warning)...)
	default:
		r.log.Info(eventMessage(e.Kind), attrs...)
	}
	if err := r.cfg.Notifier.Notify(ctx, e); err != nil {
		r.log.Error("queue notification", "event", e.Kind, "user", e.User, "error", err)
	}
}
