// Package keyrot is the domain of keyrot: it rotates AWS IAM user access keys on
// a schedule, keeps the current key in AWS Secrets Manager, and tells people
// about every key event.
//
// The root package holds the domain types (AccessKey, Credentials, Event,
// Policy), the interfaces the outside world is reached through (KeyManager,
// KeyVerifier, SecretStore, Notifier), the pure planner that turns an
// observation into the next steps, the Rotator that carries a plan out, and the
// Scheduler that runs it on time. It imports none of its subpackages: the
// adapters (iam, secretsmanager, ses, smtp, http) speak in these types, and
// cmd/ wires them together.
package keyrot

import (
	"fmt"
	"log/slog"
	"time"
)

// KeyStatus is the IAM status of an access key.
type KeyStatus string

// The two IAM access key statuses.
const (
	KeyActive   KeyStatus = "Active"
	KeyInactive KeyStatus = "Inactive"
)

// AccessKey is an IAM access key as IAM lists it: never its secret.
type AccessKey struct {
	ID         string
	UserName   string
	Status     KeyStatus
	CreateDate time.Time
}

// User is an IAM user.
type User struct {
	Name string
	ARN  string
	Path string
	Tags map[string]string
}

// Credentials is an access key with its secret, as stored in Secrets Manager
// and handed to consumers. Its String, GoString and LogValue methods never show
// the secret, so a stray log or error cannot leak it.
type Credentials struct {
	UserName        string
	AccessKeyID     string
	SecretAccessKey string
	CreateDate      time.Time
	// Generation counts the keys keyrot has created for this user; it picks
	// the ring member and the idempotency token of each rotation.
	Generation int
	// CurrentSince is when the key was promoted to current (zero while pending).
	CurrentSince time.Time
	// Timings are the timings the key was made current under. They are
	// stored with it, so every reader (the API, serve, a direct read, the
	// Lambda) computes the same NextRotation and Expiration, with no config.
	Timings Timings
	// NextRotation is when the successor should be current; consumers
	// should fetch again after it, and must before Expiration. Set by Annotate.
	NextRotation time.Time
	// Expiration is the latest moment a consumer should refetch: the key
	// cannot be deactivated before it. Used as credential_process
	// Expiration. Set by Annotate.
	Expiration time.Time
}

// String describes the credentials without the secret.
func (c Credentials) String() string {
	return fmt.Sprintf("credentials{user=%q key=%q}", c.UserName, c.AccessKeyID)
}

// GoString is String, so %#v cannot print the secret either.
func (c Credentials) GoString() string { return c.String() }

// LogValue keeps the secret out of structured logs.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", c.UserName), slog.String("key_id", c.AccessKeyID))
}

// Clock tells the time and waits. It is injected everywhere so that tests
// drive time instead of sleeping.
type Clock interface {
	Now() time.Time
	// After waits for d and then sends the time, like time.After; a
	// driven clock may send as soon as it has advanced past the deadline.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
