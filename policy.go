package keyrot

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// UnmanagedKeys says what to do with access keys keyrot did not create.
type UnmanagedKeys string

// The two ways to treat keys keyrot did not create.
const (
	// AdoptUnmanaged rotates them out like a previous key once a keyrot key
	// is current: deactivated, then deleted, on the same timings.
	AdoptUnmanaged UnmanagedKeys = "adopt"
	// ReportUnmanaged leaves them alone and reports them.
	ReportUnmanaged UnmanagedKeys = "report"
)

// Policy holds the rotation timings.
type Policy struct {
	// RotateEvery: a new key is created when the current key is this old.
	RotateEvery time.Duration
	// DeactivateAfter: the previous key is deactivated this long after its
	// successor became current.
	DeactivateAfter time.Duration
	// DeleteAfter: an inactive previous key is deleted after this long.
	DeleteAfter time.Duration
	// UnmanagedKeys: adopt or report keys keyrot did not create.
	UnmanagedKeys UnmanagedKeys
	// VerifyTimeout bounds how long a new key is retried against STS
	// (IAM propagation typically takes 8-10 s).
	VerifyTimeout time.Duration
	// OrphanGrace is how long an unfinished create is left to its writer
	// (possibly another keyrot) before the rotation is given up.
	OrphanGrace time.Duration
	// StepLateness is how late a due step may start: about a second for
	// the daemon, the schedule's period for the Lambda (one minute). It is
	// part of the timings consumers are given.
	StepLateness time.Duration
	// SyncMaxHold is how long past its due time the previous key is held
	// active while a delivery target has not confirmed its successor (0:
	// until the next rotation is due).
	SyncMaxHold time.Duration
	// SyncOnFailure says what happens once SyncMaxHold has passed ("":
	// SyncHold).
	SyncOnFailure SyncOnFailure
}

// SyncOnFailure says what to do with a previous key held for a delivery
// target that kept failing past sync.max_hold.
type SyncOnFailure string

// The two ways to end a hold.
const (
	// SyncHold keeps the previous key active until every target confirmed
	// (reported): nothing breaks, and rotation waits.
	SyncHold SyncOnFailure = "hold"
	// SyncProceed deactivates the previous key anyway (reported): the
	// failing target is left with a key that stops working.
	SyncProceed SyncOnFailure = "proceed"
)

// DefaultPolicy returns the seed's timings: rotate every 5 minutes,
// deactivate after 2, delete after 1.
func DefaultPolicy() Policy {
	return Policy{
		RotateEvery:     5 * time.Minute,
		DeactivateAfter: 2 * time.Minute,
		DeleteAfter:     time.Minute,
		UnmanagedKeys:   AdoptUnmanaged,
		VerifyTimeout:   90 * time.Second,
		OrphanGrace:     3 * time.Minute,
		StepLateness:    time.Second,
	}
}

// Validate reports the first field that is out of range, named by its
// config key. The IAM limit of two keys per user means the previous key must
// be gone before the next rotation: DeactivateAfter + DeleteAfter must be
// less than RotateEvery.
func (p Policy) Validate() error {
	var first error
	p.Check(func(field, reason string) {
		if first == nil {
			first = fmt.Errorf("keyrot: policy: %s: %s", field, reason)
		}
	})
	return first
}

// Check reports every field that is out of range to report, by its config
// key (the config package collects them with the other settings' problems).
func (p Policy) Check(report func(field, reason string)) {
	if p.RotateEvery < time.Second {
		report("rotation.rotate_every", "must be at least 1s")
	}
	if p.DeactivateAfter <= 0 {
		report("rotation.deactivate_after", "must be positive")
	}
	if p.DeleteAfter <= 0 {
		report("rotation.delete_after", "must be positive")
	}
	if p.RotateEvery >= time.Second && p.DeactivateAfter > 0 && p.DeleteAfter > 0 && p.DeactivateAfter+p.DeleteAfter >= p.RotateEvery {
		report("rotation.deactivate_after", fmt.Sprintf(
			"deactivate_after (%s) + delete_after (%s) must be less than rotate_every (%s), or IAM's two-key limit blocks the next rotation",
			FormatDuration(p.DeactivateAfter), FormatDuration(p.DeleteAfter), FormatDuration(p.RotateEvery)))
	}
	if p.UnmanagedKeys != AdoptUnmanaged && p.UnmanagedKeys != ReportUnmanaged {
		report("rotation.unmanaged_keys", fmt.Sprintf("%q is not adopt or report", p.UnmanagedKeys))
	}
	if p.VerifyTimeout <= 0 {
		report("rotation.verify_timeout", "must be positive")
	}
	if p.OrphanGrace <= 0 {
		report("rotation.orphan_grace", "must be positive")
	}
	if p.StepLateness < 0 {
		report("rotation.step_lateness", "must not be negative")
	}
	if p.SyncMaxHold < 0 {
		report("sync.max_hold", "must not be negative (0: until the next rotation is due)")
	}
	if p.SyncOnFailure != "" && p.SyncOnFailure != SyncHold && p.SyncOnFailure != SyncProceed {
		report("sync.on_failure", fmt.Sprintf("%q is not hold or proceed", p.SyncOnFailure))
	}
}

// maxWritesPerSecretPerDay keeps each secret well under Secrets Manager's
// quota of 100 versions, none of which is pruned before it is 24 hours old.
const maxWritesPerSecretPerDay = 72

// RingSize is how many secrets a user's key rotates through. Each rotation
// writes one version; with cadences under 20 minutes one secret would exceed
// Secrets Manager's version quota (and AWS's advice of at most one write per
// 10 minutes), so writes are spread over a ring. Production cadences give 1.
func (p Policy) RingSize() int {
	if p.RotateEvery <= 0 {
		return 1
	}
	perDay := int((24*time.Hour + p.RotateEvery - 1) / p.RotateEvery)
	n := (perDay + maxWritesPerSecretPerDay - 1) / maxWritesPerSecretPerDay
	return max(n, 1)
}

// Timings are what a reader of a key needs to know when to fetch it again.
// They travel with the key on its secret.
type Timings struct {
	RotateEvery, DeactivateAfter time.Duration
	// StepLateness is how late the engine may start a due step.
	StepLateness time.Duration
}

// Timings returns the timings a key made current under p is given.
func (p Policy) Timings() Timings {
	return Timings{RotateEvery: p.RotateEvery, DeactivateAfter: p.DeactivateAfter, StepLateness: p.StepLateness}
}

// String writes the timings as stored on a secret: "5m 2m 1s".
func (t Timings) String() string {
	return FormatDuration(t.RotateEvery) + " " + FormatDuration(t.DeactivateAfter) + " " + FormatDuration(t.StepLateness)
}

// ParseTimings reads timings written by Timings.String.
func ParseTimings(s string) (Timings, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return Timings{}, fmt.Errorf("timings %q: want three durations", s)
	}
	var t Timings
	var err error
	for i, d := range []*time.Duration{&t.RotateEvery, &t.DeactivateAfter, &t.StepLateness} {
		if *d, err = ParseDuration(f[i]); err != nil {
			return Timings{}, fmt.Errorf("timings %q: %w", s, err)
		}
	}
	if t.RotateEvery <= 0 || t.DeactivateAfter <= 0 {
		return Timings{}, fmt.Errorf("timings %q: rotate_every and deactivate_after must be positive", s)
	}
	return t, nil
}

// Annotate sets when a consumer reading c at now should fetch again. The
// key cannot be deactivated before its successor has been current for
// DeactivateAfter, and no successor can become current before both now
// and the rotation's due time (plus the engine's lateness):
//
//	NextRotation = CreateDate + RotateEvery + StepLateness
//	Expiration   = max(now, NextRotation) + DeactivateAfter/2
//
// The half leaves consumers the other half of the overlap to switch. While
// the key is current, Expiration is never in the past: a rotation that is
// overdue (the engine stopped, failing) moves it forward instead of
// breaking consumers. Credentials without stored timings (written by an
// older keyrot) get the seed's.
func (c Credentials) Annotate(now time.Time) Credentials {
	t := c.Timings
	if t.RotateEvery <= 0 || t.DeactivateAfter <= 0 {
		t = DefaultPolicy().Timings()
	}
	c.NextRotation = c.CreateDate.Add(t.RotateEvery + t.StepLateness)
	c.Expiration = later(now, c.NextRotation).Add(t.DeactivateAfter / 2)
	return c
}

// Overdue reports how long c's rotation is overdue at now (0 if it is not).
func (c Credentials) Overdue(now time.Time) time.Duration {
	if c.NextRotation.IsZero() || !now.After(c.NextRotation) {
		return 0
	}
	return now.Sub(c.NextRotation)
}

// ParseDuration parses a duration like time.ParseDuration, and also accepts
// days ("90d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	invalid := fmt.Errorf("invalid duration %q: want a number then s, m, h or d", s)
	rest := s
	var days time.Duration
	if i := strings.IndexByte(rest, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil || !(n >= 0) || n*float64(24*time.Hour) >= float64(math.MaxInt64) {
			return 0, invalid
		}
		days = time.Duration(n * float64(24*time.Hour))
		rest = rest[i+1:]
		if rest == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || (days > 0 && d < 0) || days+d < days {
		return 0, invalid
	}
	return days + d, nil
}

// FormatDuration prints d in the largest whole unit, with days: "90d", "5m", "1h30m".
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	// time.Duration.String writes "5m0s" and "1h0m0s": drop the zero units.
	for _, zero := range []string{"0s", "0m"} {
		if t := strings.TrimSuffix(s, zero); t != s && len(t) > 0 && (t[len(t)-1] == 'm' || t[len(t)-1] == 'h') {
			s = t
		}
	}
	return s
}
