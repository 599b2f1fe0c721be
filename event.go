package keyrot

import (
	"context"
	"time"
)

// EventKind says what happened to a key.
type EventKind string

// The event kinds keyrot emits.
const (
	EventKeyCreated     EventKind = "key_created"
	EventKeyDeactivated EventKind = "key_deactivated"
	EventKeyDeleted     EventKind = "key_deleted"
	EventRotationFailed EventKind = "rotation_failed"
	// EventRotationRecovered ends a reported failure incident.
	EventRotationRecovered EventKind = "rotation_recovered"
	EventWarning           EventKind = "warning"
	// EventSyncFailed: delivering the current key to a target (Event.Target)
	// has kept failing; told once per incident.
	EventSyncFailed EventKind = "sync_failed"
	// EventSyncRecovered ends a reported delivery failure incident.
	EventSyncRecovered EventKind = "sync_recovered"
)

// EventKinds lists every event kind, in display order.
var EventKinds = []EventKind{
	EventKeyCreated, EventKeyDeactivated, EventKeyDeleted,
	EventRotationFailed, EventRotationRecovered, EventWarning,
	EventSyncFailed, EventSyncRecovered,
}

// WarningKind says which condition a warning event is about.
type WarningKind string

// The conditions keyrot warns about.
const (
	// WarnKeyInUse: a key was still in use after its successor became current.
	WarnKeyInUse WarningKind = "key_in_use"
	// WarnUnmanagedKey: a key keyrot did not create, left alone (unmanaged_keys: report).
	WarnUnmanagedKey WarningKind = "unmanaged_key"
	// WarnKeyLimit: the user is stuck at two keys and cannot be rotated.
	WarnKeyLimit WarningKind = "key_limit"
	// WarnUserDeleted: a managed user no longer exists in IAM.
	WarnUserDeleted WarningKind = "user_deleted"
	// WarnSecretStale: the secret holds a key IAM no longer has.
	WarnSecretStale WarningKind = "secret_stale"
	// WarnCurrentInactive: the current key was deactivated outside keyrot.
	WarnCurrentInactive WarningKind = "current_inactive"
	// WarnOrphanKey: keyrot created a key it could not store; nobody can
	// use it, so it was deactivated at once and is deleted on the normal
	// timings.
	WarnOrphanKey WarningKind = "orphan_key"
	// WarnAPIKeyExpiring: an API key of keyrot's REST API expires soon, or
	// has expired (Event.APIKey names it; User is empty).
	WarnAPIKeyExpiring WarningKind = "api_key_expiring"
	// WarnSyncHoldExpired: a target has not confirmed the current key and
	// the previous key was held active for sync.max_hold; it now stays
	// active (sync.on_failure: hold) or is deactivated anyway (proceed).
	WarnSyncHoldExpired WarningKind = "sync_hold_expired"
)

// Event is one thing that happened to a user's keys. It never carries a secret.
type Event struct {
	Kind    EventKind
	Warning WarningKind // set when Kind is EventWarning
	User    string
	KeyID   string
	// Owner is the user's owner email address (from the IAM user's owner tag), if any.
	Owner string
	Time  time.Time
	// Summary is one line saying what happened, for subjects and logs.
	Summary string
	// Next says what happens next and NextAt when (zero if nothing is planned).
	Next   string
	NextAt time.Time
	// LastUsed is the key's last use, for key-in-use warnings and deactivations.
	LastUsed time.Time
	// Err is the failure, for EventRotationFailed (already free of secrets).
	Err string
	// APIKey is the name (never the key or its hash) of the REST API key an
	// API-key warning is about; empty for events about IAM users' keys.
	APIKey string
	// Target is the delivery target (sync.github, sync.gitlab) a sync
	// event is about, by its id.
	Target string
	// Account is the AWS account the event happened in, when keyrot works
	// across accounts (accounts in the config); empty in its own account.
	// An event about a whole account (its role could not be assumed) has
	// Account and no User.
	Account string
}

// Notifier delivers events to people. Notify must not block a rotation: an
// implementation queues the event and returns; delivery failures are its own
// to retry, log and count. It returns an error only if the event could not
// even be queued (for example after Close).
type Notifier interface {
	Notify(ctx context.Context, e Event) error
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(ctx context.Context, e Event) error

// Notify calls f.
func (f NotifierFunc) Notify(ctx context.Context, e Event) error { return f(ctx, e) }

// MultiNotifier sends each event to every notifier and returns the first error.
type MultiNotifier []Notifier

// Notify sends e to every notifier.
func (m MultiNotifier) Notify(ctx context.Context, e Event) error {
	var first error
	for _, n := range m {
		if err := n.Notify(ctx, e); err != nil && first == nil {
			first = err
		}
	}
	return first
}
