package fleet

import (
	"fmt"
	"time"

	"github.com/keyrot/keyrot"
)

// Rules are what keys are checked against. The defaults are the CIS AWS
// Foundations Benchmark's: "Ensure access keys are rotated every 90 days or
// less" (1.14 in v1.5 to v4, 2.12 in v7) and "Ensure credentials unused for
// 45 days or more are disabled" (1.12, later 2.11).
type Rules struct {
	// MaxKeyAge: an active key older than this is out of policy.
	MaxKeyAge time.Duration
	// MaxUnused: an active key not used for this long (a key never used:
	// created this long ago) is out of policy.
	MaxUnused time.Duration
}

// DefaultRules are the CIS benchmark's: 90 days, 45 days.
func DefaultRules() Rules {
	return Rules{MaxKeyAge: 90 * 24 * time.Hour, MaxUnused: 45 * 24 * time.Hour}
}

// Validate reports a rule that cannot be checked.
func (r Rules) Validate() error {
	switch {
	case r.MaxKeyAge <= 0:
		return fmt.Errorf("fleet: max key age must be positive, not %s", r.MaxKeyAge)
	case r.MaxUnused <= 0:
		return fmt.Errorf("fleet: max unused time must be positive, not %s", r.MaxUnused)
	}
	return nil
}

// FindingKind names a way a user is out of policy.
type FindingKind string

// The findings Check reports.
const (
	// FindingKeyAge: an active key older than MaxKeyAge.
	FindingKeyAge FindingKind = "key_age"
	// FindingUnused: an active key unused for MaxUnused.
	FindingUnused FindingKind = "unused_key"
	// FindingInactive: an inactive key that keyrot will not delete.
	FindingInactive FindingKind = "inactive_key"
	// FindingUnknown: the user could not be observed, so it cannot be
	// shown to be in policy.
	FindingUnknown FindingKind = "unknown"
)

// Finding is one way a user is out of policy.
type Finding struct {
	Kind   FindingKind `json:"kind"`
	KeyID  string      `json:"key_id,omitempty"`
	Detail string      `json:"detail"`
}

// Check returns how u is out of policy at now (none: it is in policy).
func (r Rules) Check(u User, now time.Time) []Finding {
	var out []Finding
	if u.Error != "" {
		out = append(out, Finding{Kind: FindingUnknown, Detail: u.Error})
	}
	for _, k := range u.Keys {
		switch k.Status {
		case keyrot.KeyActive:
			if age := k.Age(now); age > r.MaxKeyAge {
				out = append(out, Finding{Kind: FindingKeyAge, KeyID: k.ID,
					Detail: fmt.Sprintf("key %s is %s old (at most %s)", k.ID, FormatAge(age), FormatAge(r.MaxKeyAge))})
			}
			if idle := now.Sub(later(k.Created, k.LastUsed)); idle >= r.MaxUnused {
				what := "last used " + FormatAge(idle) + " ago"
				if k.LastUsed.IsZero() {
					what = "never used, created " + FormatAge(idle) + " ago"
				}
				out = append(out, Finding{Kind: FindingUnused, KeyID: k.ID,
					Detail: fmt.Sprintf("active key %s %s (disable keys unused for %s)", k.ID, what, FormatAge(r.MaxUnused))})
			}
		case keyrot.KeyInactive:
			if k.DeleteAt.IsZero() {
				out = append(out, Finding{Kind: FindingInactive, KeyID: k.ID,
					Detail: fmt.Sprintf("inactive key %s is kept and keyrot will not delete it: delete it", k.ID)})
			}
		}
	}
	return out
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// FormatAge writes a duration for people, to the precision that matters
// at its size: "93d", "26h", "5h12m", "4m10s", "40s".
func FormatAge(d time.Duration) string {
	d = d.Truncate(time.Second)
	switch {
	case d < 0:
		return "-" + FormatAge(-d)
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= 10*time.Hour:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
