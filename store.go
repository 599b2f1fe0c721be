package keyrot

import (
	"context"
	"log/slog"
	"time"
)

// KeyManager manages IAM users' access keys (implemented by package iam).
// Every listing is complete: implementations follow every page.
type KeyManager interface {
	// ListUsers returns the IAM users under pathPrefix ("" or "/" for all),
	// without tags (IAM does not list them).
	ListUsers(ctx context.Context, pathPrefix string) ([]User, error)
	// GetUser returns one user with its tags, or ErrUserNotFound.
	GetUser(ctx context.Context, name string) (User, error)
	// GroupMembers returns the names of the users in an IAM group, or
	// ErrUserNotFound wrapped if the group does not exist.
	GroupMembers(ctx context.Context, group string) ([]string, error)
	// ListAccessKeys returns the user's keys, oldest first, or ErrUserNotFound.
	ListAccessKeys(ctx context.Context, user string) ([]AccessKey, error)
	// CreateAccessKey creates a key. The returned Credentials carry the
	// secret, which IAM shows only once. Errors: ErrKeyLimit, ErrUserNotFound.
	CreateAccessKey(ctx context.Context, user string) (Credentials, error)
	// SetKeyStatus activates or deactivates a key; ErrKeyNotFound.
	SetKeyStatus(ctx context.Context, user, keyID string, status KeyStatus) error
	// DeleteAccessKey deletes a key; ErrKeyNotFound if it is already gone.
	DeleteAccessKey(ctx context.Context, user, keyID string) error
	// KeyLastUsed returns when the key was last used (zero if never).
	KeyLastUsed(ctx context.Context, keyID string) (time.Time, error)
}

// KeyVerifier proves that a key works (implemented with sts:GetCallerIdentity).
type KeyVerifier interface {
	// VerifyKey returns nil if AWS accepts the key, an error wrapping
	// ErrKeyRejected if AWS rejects it (not yet propagated, inactive), or
	// another error if AWS could not be asked.
	VerifyKey(ctx context.Context, creds Credentials) error
}

// StoredKey is a key as its secret version records it.
type StoredKey struct {
	KeyID      string
	CreateDate time.Time
	Generation int
	Secret     string // the ring member holding it
	VersionID  string
	// Creds is the stored value, secret included; filled for a pending key,
	// which must be verified before it is promoted.
	Creds Credentials
}

// LogValue keeps the stored secret out of structured logs.
func (k StoredKey) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key_id", k.KeyID), slog.Int("generation", k.Generation), slog.String("secret", k.Secret))
}

// Intent is written before a key is created, so that a crash between
// CreateAccessKey and the store leaves a trace the next pass can act on.
type Intent struct {
	Generation int
	Member     int // the ring member the key goes to
	At         time.Time
}

// SecretState is what Secrets Manager says about a user's secret ring.
type SecretState struct {
	// Exists reports whether the user's primary secret exists.
	Exists bool
	// Generation is the generation of the last key promoted (0: none yet).
	Generation int
	// LastIntent is the highest generation a rotation was ever begun with.
	// A generation whose rotation was abandoned is never begun again, so
	// its deterministic version token never meets the version it may have
	// left behind.
	LastIntent int
	// Current is the key behind AWSCURRENT of the current member, if any.
	Current *StoredKey
	// CurrentSince is when Current was promoted.
	CurrentSince time.Time
	// Timings are those readers of the current key are given (zero if the
	// secret predates them).
	Timings Timings
	// PreviousKeyID is the key Current replaced (keyrot's own, to rotate out).
	PreviousKeyID string
	// Intent is an unfinished rotation, if any; Pending is its stored key.
	Intent  *Intent
	Pending *StoredKey
	// Inactive records when keyrot deactivated (or first saw inactive) a key.
	Inactive map[string]time.Time
	// Seen records when keyrot first saw a key it did not create that
	// appeared after the current key: an adopted key is retired on the
	// normal timings counted from then, never at once.
	Seen map[string]time.Time
	// Unreported holds key events written with the state change they
	// report (key id to event kind) and not yet confirmed as told, so that
	// a crash between a change and its report never loses the event.
	Unreported map[string]EventKind
	// FailingSince is when a failure incident that was reported began
	// (zero: none), so that a restart neither re-sends it nor forgets to
	// say it ended.
	FailingSince time.Time
	// Warned records the standing warnings already sent, so that a restart
	// or a fresh process (a new Lambda environment) does not send them again
	// before the quiet period is over.
	Warned map[WarningKind]WarnRecord
	// Delivered records, by delivery target id, which key the target
	// confirmed last and when a reported delivery failure began, so that a
	// restart neither pushes the key again nor forgets an incident.
	Delivered map[string]Delivery
}

// Delivery is a target's record on a user's secret.
type Delivery struct {
	// KeyID is the access key the target last confirmed ("" if none).
	KeyID string
	// FailingSince is when a reported delivery failure incident began
	// (zero: none reported).
	FailingSince time.Time
}

// WithoutSecrets returns s with the stored keys' credentials removed, so
// it can be shown and kept by views that must never hold a secret.
func (s SecretState) WithoutSecrets() SecretState {
	for _, k := range []**StoredKey{&s.Current, &s.Pending} {
		if *k != nil {
			c := **k
			c.Creds = Credentials{}
			*k = &c
		}
	}
	return s
}

// WarnRecord is when a warning about a condition was last sent, and which
// key it named.
type WarnRecord struct {
	KeyID string
	At    time.Time
}

// DefaultQuietPeriod is how long a warning is not sent again by default
// (notify.quiet_period).
const DefaultQuietPeriod = 24 * time.Hour

// Repeats reports whether a warning of the record's kind about keyID, at
// now, is the one the record says went out less than quiet ago. This is
// keyrot's one idea of "the same warning" (the same kind, about the same
// key, within the quiet period): such a warning is not sent again. The
// rotator keeps the records on the user's secret, so a restart does not
// re-send; the notifier sends whatever it is given.
func (r WarnRecord) Repeats(keyID string, now time.Time, quiet time.Duration) bool {
	return r.KeyID == keyID && !r.At.IsZero() && now.Sub(r.At) < quiet
}

// SecretStore keeps each user's current key in a ring of Secrets Manager
// secrets (implemented by package secretsmanager). Every method is safe to
// repeat after a crash.
type SecretStore interface {
	// Load observes the user's ring. A user with no secret gives a state
	// with Exists false, not an error.
	Load(ctx context.Context, user string) (SecretState, error)
	// Init creates the user's primary secret (encrypted, tagged, readable
	// by the user itself) if it does not exist yet, so that records can be
	// kept for a user keyrot has not rotated yet.
	Init(ctx context.Context, user User) error
	// BeginCreate records the intent to create a key (and its generation
	// as LastIntent), creating the ring member if needed.
	BeginCreate(ctx context.Context, user User, intent Intent) error
	// StorePending stores creds as the AWSPENDING version of the intent's
	// member with a token derived from the user and generation. It returns
	// ErrConflict if another writer stored another key for that generation.
	StorePending(ctx context.Context, intent Intent, creds Credentials) (StoredKey, error)
	// Promote makes a pending key current (AWSCURRENT), records when, which
	// key it replaced, the timings its readers are given, and the
	// key_created event as unreported (in the same write as the pointer),
	// and clears the intent.
	Promote(ctx context.Context, user string, pending StoredKey, previousKeyID string, since time.Time, timings Timings) error
	// SetTimings replaces the timings readers of the current key are given
	// (after a change of the rotation policy).
	SetTimings(ctx context.Context, user string, timings Timings) error
	// ClearIntent drops an intent whose key will never be stored.
	ClearIntent(ctx context.Context, user string) error
	// MarkInactive records when keyID was found inactive (or deactivated
	// by keyrot without an event to report).
	MarkInactive(ctx context.Context, user, keyID string, at time.Time) error
	// MarkDeactivating records when keyID is deactivated, and the
	// key_deactivated event as unreported, in one write made before the
	// deactivation, so the deletion timing and the event survive a crash.
	MarkDeactivating(ctx context.Context, user, keyID string, at time.Time) error
	// MarkSeen records when keyrot first saw a key it did not create.
	MarkSeen(ctx context.Context, user, keyID string, at time.Time) error
	// Reported drops the unreported mark of keyID's event once told.
	Reported(ctx context.Context, user, keyID string) error
	// MarkFailing records that a failure incident begun at since was
	// reported; a zero since clears the record when the incident ends.
	MarkFailing(ctx context.Context, user string, since time.Time) error
	// MarkWarned records that a warning was sent.
	MarkWarned(ctx context.Context, user string, kind WarningKind, keyID string, at time.Time) error
	// ClearWarned drops the record of a warning whose condition has ended,
	// so that it is sent at once if it comes back.
	ClearWarned(ctx context.Context, user string, kind WarningKind) error
	// MarkDelivery records a delivery target's state for the user: the key
	// it confirmed and a reported failure incident, if any.
	MarkDelivery(ctx context.Context, user, target string, d Delivery) error
	// Forget drops every record about a key that has been deleted.
	Forget(ctx context.Context, user, keyID string) error
	// Current returns the user's current credentials, or ErrSecretNotFound.
	Current(ctx context.Context, user string) (Credentials, error)
}

// CredentialsPublisher receives a user's credentials the moment they become
// current, so an API cache in the same process serves the new key at once.
type CredentialsPublisher interface {
	Publish(creds Credentials)
}

// KeyPointer is what a user's primary secret says, in its tags alone, about
// the user's current key: enough to tell, without reading a secret value,
// whether the key a reader holds is still the current one. The API cache
// lists every user's pointer in one call and reads values only for the
// users whose pointer moved.
type KeyPointer struct {
	UserName string
	// Secret is the ring member whose AWSCURRENT holds the key.
	Secret     string
	KeyID      string
	Generation int
	// Since is when the key became current (whole seconds).
	Since time.Time
	// Timings are those its readers are given (zero if not stored).
	Timings Timings
}

// Names reports whether c is the key p points at, as promoted then and
// with the timings stored now.
func (p KeyPointer) Names(c Credentials) bool {
	return p.UserName == c.UserName && p.KeyID == c.AccessKeyID && p.Generation == c.Generation &&
		p.Since.Unix() == c.CurrentSince.Unix() && (p.Timings == Timings{} || p.Timings == c.Timings)
}
