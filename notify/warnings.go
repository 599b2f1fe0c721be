package notify

import (
	"sync"
	"time"

	"github.com/keyrot/keyrot"
)

// Warnings remembers the warnings a notifier reported, so that an
// unchanged warning goes out once per quiet period. Each notifier (email,
// each channel) keeps its own, since each forgets a warning it failed to
// deliver. It is safe for concurrent use.
type Warnings struct {
	quiet time.Duration

	mu      sync.Mutex
	seen    map[string]map[warnKey]warnRecord // by user
	pruneAt time.Time
}

// warnKey identifies a warned-about condition within one user (or about
// one API key).
type warnKey struct {
	warning keyrot.WarningKind
	keyID   string
	apiKey  string
}

type warnRecord struct {
	fingerprint string
	at          time.Time
}

// NewWarnings returns a record in which a warning is not repeated within
// quiet.
func NewWarnings(quiet time.Duration) *Warnings {
	return &Warnings{quiet: quiet, seen: map[string]map[warnKey]warnRecord{}}
}

// fingerprint is what makes a condition "changed": the summary says what
// the condition is, so it must not carry times that move on every pass.
func fingerprint(e keyrot.Event) string { return e.Summary + "\x00" + e.Err }

// Admit reports whether e should be sent, recording it if so. Any event
// other than a warning is admitted; a new key for a user starts its
// warnings afresh.
func (w *Warnings) Admit(e keyrot.Event, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.Kind == keyrot.EventKeyCreated {
		delete(w.seen, e.User)
	}
	if e.Kind != keyrot.EventWarning {
		return true
	}
	w.prune(now)
	k := warnKey{e.Warning, e.KeyID, e.APIKey}
	fp := fingerprint(e)
	if r, ok := w.seen[e.User][k]; ok && r.fingerprint == fp && now.Sub(r.at) < w.quiet {
		return false
	}
	if w.seen[e.User] == nil {
		w.seen[e.User] = map[warnKey]warnRecord{}
	}
	w.seen[e.User][k] = warnRecord{fingerprint: fp, at: now}
	return true
}

// Forget drops the record of e, so that a warning that was never delivered
// is sent again on the next pass.
func (w *Warnings) Forget(e keyrot.Event) {
	if e.Kind != keyrot.EventWarning {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	k := warnKey{e.Warning, e.KeyID, e.APIKey}
	if r, ok := w.seen[e.User][k]; ok && r.fingerprint == fingerprint(e) {
		delete(w.seen[e.User], k)
	}
}

// prune drops records older than the quiet period, at most once a quiet
// period, so the table stays bounded by the conditions seen in it.
func (w *Warnings) prune(now time.Time) {
	if now.Before(w.pruneAt) {
		return
	}
	w.pruneAt = now.Add(w.quiet)
	for user, m := range w.seen {
		for k, r := range m {
			if now.Sub(r.at) >= w.quiet {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(w.seen, user)
		}
	}
}
