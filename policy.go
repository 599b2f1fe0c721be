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
	// (possibly another keyrot) before its unstored key is cleaned up.
	OrphanGrace time.Duration
}

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
	}
}

// PolicyError is a policy field that fails validation.
type PolicyError struct {
	Field  string
	Reason string
}

func (e *PolicyError) Error() string { return e.Field + ": " + e.Reason }

// Validate reports the first field that is out of range. The IAM limit of two
// keys per user means the previous key must be gone before the next rotation:
// DeactivateAfter + DeleteAfter must be less than RotateEvery.
func (p Policy) Validate() error {
	switch {
	case p.RotateEvery < time.Second:
		return &PolicyError{"rotation.rotate_every", "must be at least 1s"}
	case p.DeactivateAfter <= 0:
		return &PolicyError{"rotation.deactivate_after", "must be positive"}
	case p.DeleteAfter <= 0:
		return &PolicyError{"rotation.delete_after", "must be positive"}
	case p.DeactivateAfter+p.DeleteAfter >= p.RotateEvery:
		return &PolicyError{"rotation.deactivate_after", fmt.Sprintf(
			"deactivate_after (%s) + delete_after (%s) must be less than rotate_every (%s), or IAM's two-key limit blocks the next rotation",
			FormatDuration(p.DeactivateAfter), FormatDuration(p.DeleteAfter), FormatDuration(p.RotateEvery))}
	case p.UnmanagedKeys != AdoptUnmanaged && p.UnmanagedKeys != ReportUnmanaged:
		return &PolicyError{"rotation.unmanaged_keys", fmt.Sprintf("%q is not adopt or report", p.UnmanagedKeys)}
	case p.VerifyTimeout <= 0:
		return &PolicyError{"rotation.verify_timeout", "must be positive"}
	case p.OrphanGrace <= 0:
		return &PolicyError{"rotation.orphan_grace", "must be positive"}
	}
	return nil
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

// Annotate sets when a consumer of creds should fetch again: NextRotation
// is when the successor is due, Expiration half-way through the overlap in
// which both keys work, so an SDK refreshes before its key is deactivated.
func (p Policy) Annotate(c Credentials) Credentials {
	since := c.CurrentSince
	if since.IsZero() {
		since = c.CreateDate
	}
	c.NextRotation = c.CreateDate.Add(p.RotateEvery)
	c.Expiration = c.NextRotation.Add(p.DeactivateAfter / 2)
	if c.Expiration.Before(since) {
		c.Expiration = since.Add(p.DeactivateAfter / 2)
	}
	return c
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
