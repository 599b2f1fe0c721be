package fleet

import (
	"slices"
	"sync"
	"time"

	"github.com/keyrot/keyrot"
)

// EventLog keeps the last events this process emitted, per user. keyrot
// keeps no event log of its own (the emails are the record), so a view
// shows these labelled for what they are: what this process saw since it
// started. Safe for concurrent use.
type EventLog struct {
	perUser int
	since   time.Time

	mu     sync.Mutex
	byUser map[string][]keyrot.Event // oldest first, at most perUser
}

// NewEventLog keeps up to perUser events for each user, from since (the
// process start).
func NewEventLog(perUser int, since time.Time) *EventLog {
	return &EventLog{perUser: max(1, perUser), since: since, byUser: map[string][]keyrot.Event{}}
}

// Add records e (keyrot.Event never carries a secret).
func (l *EventLog) Add(e keyrot.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := append(l.byUser[e.User], e)
	if len(evs) > l.perUser {
		evs = slices.Delete(evs, 0, len(evs)-l.perUser)
	}
	l.byUser[e.User] = evs
}

// Recent returns user's events, newest first.
func (l *EventLog) Recent(user string) []keyrot.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := slices.Clone(l.byUser[user])
	slices.Reverse(evs)
	return evs
}

// Since is when the log began.
func (l *EventLog) Since() time.Time { return l.since }
