// The steps a plan runs: create, verify and promote, deactivate, delete,
// and the record-keeping ones, each with its own timeout.

package keyrot

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stepTimeout bounds a step once started; shutdown does not cut it short.
func (r *Rotator) stepTimeout() time.Duration { return r.cfg.Policy.VerifyTimeout + 2*time.Minute }

func (r *Rotator) hook(ctx context.Context, point string) error {
	if r.cfg.StepHook == nil {
		return nil
	}
	if err := r.cfg.StepHook(ctx, point); err != nil {
		return fmt.Errorf("step hook at %s: %w", point, err)
	}
	return nil
}

// do carries out one step. It runs on a context that shutdown does not
// cancel, so a rotation step is never cut in half.
func (r *Rotator) do(parent context.Context, u User, obs Observation, st Step) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.stepTimeout())
	defer cancel()
	log := r.log.With("user", u.Name, "step", st.Kind)
	if st.KeyID != "" {
		log = log.With("key_id", st.KeyID)
	}
	log.Debug("step", "reason", st.Reason)
	now := r.cfg.Clock.Now()
	if !obs.Secret.Exists && keepsRecord(st.Kind) {
		if err := r.cfg.Secrets.Init(ctx, u); err != nil {
			return fmt.Errorf("%s for user %q: create the secret that keeps its records: %w", st.Kind, u.Name, err)
		}
	}
	var err error
	switch st.Kind {
	case StepCreate:
		err = r.create(ctx, u, obs, st.Intent)
	case StepPromote:
		if st.Pending.Creds.SecretAccessKey == "" {
			err = fmt.Errorf("pending key %s has no stored secret", st.Pending.KeyID)
		} else {
			err = r.verifyAndPromote(ctx, u, obs, *st.Pending, st.Pending.Creds)
		}
	case StepDeactivate:
		err = r.deactivate(ctx, u, obs, st.KeyID)
	case StepRecordInactive:
		err = r.cfg.Secrets.MarkInactive(ctx, u.Name, st.KeyID, now)
	case StepRecordSeen:
		err = r.cfg.Secrets.MarkSeen(ctx, u.Name, st.KeyID, now)
	case StepDelete:
		err = r.delete(ctx, u, st.KeyID)
	case StepClearIntent:
		err = r.cfg.Secrets.ClearIntent(ctx, u.Name)
	case StepForget:
		err = r.forget(ctx, u, st)
	case StepReport:
		err = r.report(ctx, u, r.recordedEvent(obs, st))
	case StepRecordTimings:
		err = r.cfg.Secrets.SetTimings(ctx, u.Name, r.cfg.Policy.Timings())
	case StepDeliver:
		err = r.deliver(ctx, u, obs, st)
	default:
		err = fmt.Errorf("unknown step %q", st.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s for user %q: %w", st.Kind, u.Name, err)
	}
	return r.hook(ctx, "after-"+string(st.Kind))
}

// keepsRecord reports whether a step writes to the user's secret, which a
// user keyrot has not rotated yet may not have.
func keepsRecord(k StepKind) bool {
	switch k {
	case StepDeactivate, StepRecordInactive, StepRecordSeen:
		return true
	}
	return false
}

// storeAttempts bounds how often a new key's store is retried while the
// secret exists only in memory.
const storeAttempts = 6

func (r *Rotator) create(ctx context.Context, u User, obs Observation, intent Intent) error {
	intent.At = r.cfg.Clock.Now()
	if err := r.cfg.Secrets.BeginCreate(ctx, u, intent); err != nil {
		return fmt.Errorf("record intent: %w", err)
	}
	if err := r.hook(ctx, "after-intent"); err != nil {
		return err
	}
	creds, err := r.cfg.Keys.CreateAccessKey(ctx, u.Name)
	if err != nil {
		// Only a refusal proves nothing was created; otherwise the key may
		// exist, and the intent lets the orphan cleanup find it.
		if errors.Is(err, ErrKeyLimit) || errors.Is(err, ErrUserNotFound) {
			if cerr := r.cfg.Secrets.ClearIntent(ctx, u.Name); cerr != nil {
				r.log.Warn("clear intent after failed create", "user", u.Name, "error", cerr)
			}
		}
		return fmt.Errorf("create access key: %w", err)
	}
	creds.Generation = intent.Generation
	if err := r.hook(ctx, "after-create-key"); err != nil {
		return err
	}
	// The secret exists only in this response: store it before anything else.
	var stored StoredKey
	for attempt := 1; ; attempt++ {
		stored, err = r.cfg.Secrets.StorePending(ctx, intent, creds)
		if err == nil || errors.Is(err, ErrConflict) || attempt == storeAttempts {
			break
		}
		r.log.Warn("store new key failed; retrying", "user", u.Name, "key_id", creds.AccessKeyID, "attempt", attempt, "error", err)
		_ = storeBackoff.Wait(ctx, r.cfg.Clock, attempt) // a cancelled ctx: the next store fails and says why
	}
	if err != nil {
		return r.abandonUnstored(ctx, u, creds.AccessKeyID, err)
	}
	if err := r.hook(ctx, "after-store-pending"); err != nil {
		return err
	}
	return r.verifyAndPromote(ctx, u, obs, stored, creds)
}

// abandonUnstored deals with a key keyrot created and could not store:
// nobody can be using it, so it is deactivated at once and recorded as
// keyrot's own, to be deleted after DeleteAfter like any key on its way
// out. Its deletion waits like every other. If neither can be done, the
// intent stays and the key will be treated as one keyrot did not create.
func (r *Rotator) abandonUnstored(ctx context.Context, u User, keyID string, storeErr error) error {
	var problems []error
	if err := r.cfg.Keys.SetKeyStatus(ctx, u.Name, keyID, KeyInactive); err != nil && !errors.Is(err, ErrKeyNotFound) {
		problems = append(problems, fmt.Errorf("deactivate it: %w", err))
	}
	now := r.cfg.Clock.Now() // after the call: its deletion counts from here
	conflict := errors.Is(storeErr, ErrConflict)
	if err := r.cfg.Secrets.MarkInactive(ctx, u.Name, keyID, now); err != nil {
		problems = append(problems, fmt.Errorf("record it: %w", err))
	} else if !conflict { // on a conflict the intent is the other writer's
		if err := r.cfg.Secrets.ClearIntent(ctx, u.Name); err != nil {
			r.log.Warn("clear intent after failed store", "user", u.Name, "error", err)
		}
	}
	if len(problems) == 0 {
		r.emit(ctx, u, Event{Kind: EventWarning, Warning: WarnOrphanKey, KeyID: keyID,
			Summary: fmt.Sprintf("key %s of %s was created but could not be stored, so nothing can use it; it is deactivated and will be deleted", keyID, u.Name),
			Next:    fmt.Sprintf("key %s will be deleted", keyID), NextAt: now.Add(r.cfg.Policy.DeleteAfter)})
	}
	what := "store key " + keyID + " as pending"
	if conflict {
		what = "store key " + keyID + ": another keyrot is rotating this user"
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w (and the unstored key could not be set aside: %w)", what, storeErr, errors.Join(problems...))
	}
	return fmt.Errorf("%s: %w (the unstored key is deactivated)", what, storeErr)
}

// ceilSecond is t rounded up to the second, as the secret stores times.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

func (r *Rotator) verifyAndPromote(ctx context.Context, u User, obs Observation, pending StoredKey, creds Credentials) error {
	if err := r.verify(ctx, creds); err != nil {
		return err
	}
	if err := r.hook(ctx, "after-verify"); err != nil {
		return err
	}
	previous := obs.Secret.PreviousKeyID
	if cur := obs.Secret.Current; cur != nil && cur.KeyID != pending.KeyID {
		previous = cur.KeyID
	}
	since := r.cfg.Clock.Now()
	if err := r.cfg.Secrets.Promote(ctx, u.Name, pending, previous, since, r.cfg.Policy.Timings()); err != nil {
		return fmt.Errorf("promote key %s: %w", pending.KeyID, err)
	}
	// The key became current when the pointer was written, which a slow
	// Promote (retries through throttling, a lost response) can put seconds
	// after since, and the previous key's deactivation counts from since.
	// If Promote returned after the second since is stored as (rounded
	// up), the pointer is written again with that time (Promote is safe to
	// repeat). Found by bench/chaos.sh.
	if done, stored := r.cfg.Clock.Now(), ceilSecond(since); done.After(stored) {
		if err := r.cfg.Secrets.Promote(ctx, u.Name, pending, previous, done, r.cfg.Policy.Timings()); err != nil {
			return fmt.Errorf("promote key %s: record when it became current: %w", pending.KeyID, err)
		}
		since = done
	}
	creds.CurrentSince, creds.Timings = since, r.cfg.Policy.Timings()
	creds = creds.Annotate(since)
	if r.cfg.Publisher != nil {
		r.cfg.Publisher.Publish(creds)
	}
	obs.Secret.Current, obs.Secret.CurrentSince, obs.Secret.PreviousKeyID = &pending, since, previous
	return r.report(ctx, u, r.createdEvent(obs, creds.AccessKeyID))
}

func (r *Rotator) verify(ctx context.Context, creds Credentials) error {
	deadline := r.cfg.Clock.Now().Add(r.cfg.Policy.VerifyTimeout)
	for attempt := 1; ; attempt++ {
		err := r.cfg.Verifier.VerifyKey(ctx, creds)
		if err == nil {
			return nil
		}
		if !r.cfg.Clock.Now().Before(deadline) || ctx.Err() != nil {
			return fmt.Errorf("verify new key %s with STS: not accepted within %s (left pending; the next pass retries): %w",
				creds.AccessKeyID, FormatDuration(r.cfg.Policy.VerifyTimeout), err)
		}
		_ = verifyBackoff.Wait(ctx, r.cfg.Clock, attempt) // a cancelled ctx ends the loop above
	}
}

// The retries of a step within one pass: storing a new key (while it
// exists only in memory) and proving it works through IAM's propagation.
var (
	storeBackoff  = Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second}
	verifyBackoff = Backoff{Initial: time.Second, Max: 8 * time.Second}
)

func (r *Rotator) deactivate(ctx context.Context, u User, obs Observation, keyID string) error {
	now := r.cfg.Clock.Now()
	lastUsed, err := r.cfg.Keys.KeyLastUsed(ctx, keyID)
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return fmt.Errorf("last use of key %s: %w", keyID, err)
	}
	since := obs.Secret.CurrentSince
	if !since.IsZero() && lastUsed.After(since) {
		r.warn(ctx, u, obs.Secret, Event{Kind: EventWarning, Warning: WarnKeyInUse, KeyID: keyID, LastUsed: lastUsed,
			Summary: fmt.Sprintf("key %s was used at %s, after its successor became current; whatever used it will fail once it is deactivated", keyID, lastUsed.UTC().Format(time.RFC3339))}, now)
	}
	// The record goes first, so that a crash after the call still leaves
	// the key keyrot's and its deactivation to be told. The deletion counts
	// from it, and the call can take long (retries through throttling), so
	// it first holds the latest moment the call can take effect, the end of
	// the step, and the moment the call returned once it has; a pass that
	// finds the key Inactive under a record still ahead records its own
	// time (retireKey).
	if err := r.cfg.Secrets.MarkDeactivating(ctx, u.Name, keyID, now.Add(r.stepTimeout())); err != nil {
		return fmt.Errorf("record deactivation of key %s: %w", keyID, err)
	}
	if err := r.hook(ctx, "after-mark-inactive"); err != nil {
		return err
	}
	if err := r.cfg.Keys.SetKeyStatus(ctx, u.Name, keyID, KeyInactive); err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil // already gone; the next pass forgets it
		}
		return fmt.Errorf("deactivate key %s: %w", keyID, err)
	}
	if err := r.hook(ctx, "after-set-inactive"); err != nil {
		return err
	}
	inactiveAt := r.cfg.Clock.Now()
	if err := r.cfg.Secrets.MarkInactive(ctx, u.Name, keyID, inactiveAt); err != nil {
		r.log.Warn("record when the key became inactive; the next pass records it", "user", u.Name, "key_id", keyID, "error", err)
	}
	return r.report(ctx, u, r.deactivatedEvent(u.Name, keyID, inactiveAt, lastUsed))
}

func (r *Rotator) delete(ctx context.Context, u User, keyID string) error {
	err := r.cfg.Keys.DeleteAccessKey(ctx, u.Name, keyID)
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return fmt.Errorf("delete key %s: %w", keyID, err)
	}
	if err := r.hook(ctx, "after-delete-key"); err != nil {
		return err
	}
	return r.forget(ctx, u, Step{Kind: StepForget, KeyID: keyID, Report: EventKeyDeleted})
}

// forget drops the records of a key IAM no longer has, first telling of
// its deletion if the step says so; the records are what shows that the
// deletion is still to be told.
func (r *Rotator) forget(ctx context.Context, u User, st Step) error {
	id := u.Name + "/" + string(st.Report) + "/" + st.KeyID
	if st.Report != "" {
		r.mu.Lock()
		told := r.told[id]
		r.told[id] = true
		r.mu.Unlock()
		if !told {
			r.emit(ctx, u, Event{Kind: st.Report, KeyID: st.KeyID, Summary: fmt.Sprintf("access key %s of %s was deleted", st.KeyID, u.Name)})
		}
	}
	if err := r.cfg.Secrets.Forget(ctx, u.Name, st.KeyID); err != nil {
		return fmt.Errorf("forget deleted key %s: %w", st.KeyID, err)
	}
	r.mu.Lock()
	delete(r.told, id)
	r.mu.Unlock()
	return nil
}
