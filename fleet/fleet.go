// Package fleet is the view of every managed user's access keys that people
// look at: `keyrot report` and the /ui pages. A Snapshot is built from a
// dry-run pass of the Rotator (what IAM and the state stored on the secrets
// say, exactly as `keyrot status` shows it) and each key's last use, so a
// fresh process shows the truth. It never holds a secret access key.
package fleet

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keyrot/keyrot"
)

// KeyRole says what a key is to keyrot.
type KeyRole string

// The roles a key can have.
const (
	// RoleCurrent is the key the secret holds and the API serves.
	RoleCurrent KeyRole = "current"
	// RolePrevious is a key keyrot created, on its way out.
	RolePrevious KeyRole = "previous"
	// RolePending is the key of an interrupted rotation, not current yet.
	RolePending KeyRole = "pending"
	// RoleAdopted is a key keyrot did not create, rotated out on its timings.
	RoleAdopted KeyRole = "adopted"
	// RoleUnmanaged is a key keyrot did not create and leaves alone.
	RoleUnmanaged KeyRole = "unmanaged"
	// RoleExempt is a key of an exempt user: keyrot does not touch it.
	RoleExempt KeyRole = "exempt"
)

// Key is one access key as a person reviewing the fleet sees it.
type Key struct {
	ID      string           `json:"id"`
	Status  keyrot.KeyStatus `json:"status"`
	Role    KeyRole          `json:"role"`
	Created time.Time        `json:"created"`
	// CurrentSince is when the current key was promoted.
	CurrentSince time.Time `json:"current_since,omitzero"`
	// InactiveSince is when keyrot deactivated the key (or first saw it inactive).
	InactiveSince time.Time `json:"inactive_since,omitzero"`
	// DeactivateAt and DeleteAt are keyrot's plan for the key (zero: none).
	DeactivateAt time.Time `json:"deactivate_at,omitzero"`
	DeleteAt     time.Time `json:"delete_at,omitzero"`
	// LastUsed is IAM's GetAccessKeyLastUsed (zero: never used).
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Age is how old the key is at now.
func (k Key) Age(now time.Time) time.Duration { return now.Sub(k.Created) }

// Warning is a condition keyrot reports about a user (keyrot.WarningKind).
type Warning struct {
	Kind    keyrot.WarningKind `json:"kind"`
	KeyID   string             `json:"key_id,omitempty"`
	Summary string             `json:"summary"`
}

// Happening is something the stored state shows happened, with its time:
// keyrot keeps no event log, but IAM's key dates and the records on the
// secret say when keys were created, made current, deactivated, and which
// warnings were emailed.
type Happening struct {
	At    time.Time `json:"at"`
	KeyID string    `json:"key_id,omitempty"`
	What  string    `json:"what"`
	// From says where the time comes from: "IAM" or "secret".
	From string `json:"from"`
}

// Target is the delivery state of the current key at one place it is
// pushed to (a CI system's secret). No target adapters exist yet: the
// field is where their state goes, and the views show it when present.
type Target struct {
	Name  string    `json:"name"`
	KeyID string    `json:"key_id"`
	State string    `json:"state"`
	At    time.Time `json:"at,omitzero"`
}

// User is one managed (or exempt) IAM user.
type User struct {
	Name string `json:"user"`
	// Exempt is why the user is exempt ("" if it is managed).
	Exempt string `json:"exempt,omitempty"`
	// Missing: named in the config, but IAM has no such user.
	Missing bool `json:"missing,omitempty"`
	// Keys: the current key first, then the others, oldest first.
	Keys []Key `json:"keys"`
	// Generation counts the keys keyrot has promoted for the user.
	Generation int `json:"generation,omitempty"`
	// Due are the steps due now (a pass would do them); Next and NextAt
	// the next step after them.
	Due    []string  `json:"due,omitempty"`
	Next   string    `json:"next,omitempty"`
	NextAt time.Time `json:"next_at,omitzero"`
	// FailingSince is when a reported failure incident began.
	FailingSince time.Time `json:"failing_since,omitzero"`
	Warnings     []Warning `json:"warnings,omitempty"`
	// Error is why the user could not be observed ("" if it was).
	Error   string      `json:"error,omitempty"`
	History []Happening `json:"-"`
	Targets []Target    `json:"targets,omitempty"`
}

// Current returns the user's current key, if it has one.
func (u User) Current() (Key, bool) {
	if len(u.Keys) > 0 && u.Keys[0].Role == RoleCurrent {
		return u.Keys[0], true
	}
	return Key{}, false
}

// Snapshot is the fleet at one moment.
type Snapshot struct {
	At     time.Time
	Policy keyrot.Policy
	Users  []User
}

// Planner is the dry-run pass a snapshot is built from (keyrot.Rotator).
type Planner interface {
	ReconcileAll(ctx context.Context, opts keyrot.RunOptions) (keyrot.Summary, error)
	Policy() keyrot.Policy
}

// KeyReader is what a snapshot asks IAM beyond the pass: exempt users'
// keys, which the pass leaves alone, and every key's last use
// (keyrot.KeyManager).
type KeyReader interface {
	ListAccessKeys(ctx context.Context, user string) ([]keyrot.AccessKey, error)
	KeyLastUsed(ctx context.Context, keyID string) (time.Time, error)
}

// Observer builds snapshots.
type Observer struct {
	Planner Planner
	Keys    KeyReader
	Clock   keyrot.Clock
	// Concurrency bounds the IAM calls made at once (default 8); they
	// also wait on the KeyReader's own rate limiter.
	Concurrency int
}

// Snapshot runs a dry-run pass and reads every key's last use. It changes
// nothing. The error is non-nil only if the users could not be listed; a
// user that could not be observed has its Error set.
func (o *Observer) Snapshot(ctx context.Context) (Snapshot, error) {
	sum, err := o.Planner.ReconcileAll(ctx, keyrot.RunOptions{DryRun: true})
	if err != nil {
		return Snapshot{}, fmt.Errorf("fleet: %w", err)
	}
	now := o.Clock.Now()
	users := make([]User, len(sum.Results))
	g, gctx := errgroup.WithContext(ctx)
	limit := o.Concurrency
	if limit <= 0 {
		limit = 8
	}
	g.SetLimit(limit)
	for i, res := range sum.Results {
		users[i] = FromResult(res, now)
		if res.Exempt {
			g.Go(func() error {
				keys, err := o.Keys.ListAccessKeys(gctx, res.User)
				if err != nil {
					users[i].Error = fmt.Sprintf("list access keys: %v", err)
					return nil
				}
				for _, k := range keys {
					users[i].Keys = append(users[i].Keys, Key{ID: k.ID, Status: k.Status, Role: RoleExempt, Created: k.CreateDate})
				}
				users[i].History = history(users[i], keyrot.SecretState{})
				return o.readLastUse(gctx, &users[i])
			})
			continue
		}
		g.Go(func() error { return o.readLastUse(gctx, &users[i]) })
	}
	_ = g.Wait() // failures are recorded on each user
	return Snapshot{At: now, Policy: o.Planner.Policy(), Users: users}, nil
}

// readLastUse fills in each key's last use; a failure is the user's error.
func (o *Observer) readLastUse(ctx context.Context, u *User) error {
	var errs []string
	for i := range u.Keys {
		at, err := o.Keys.KeyLastUsed(ctx, u.Keys[i].ID)
		if err != nil {
			errs = append(errs, fmt.Sprintf("last use of key %s: %v", u.Keys[i].ID, err))
			continue
		}
		u.Keys[i].LastUsed = at
		if !at.IsZero() {
			u.History = append(u.History, Happening{At: at, KeyID: u.Keys[i].ID, What: "last used", From: "IAM"})
		}
	}
	sortHistory(u.History)
	if len(errs) > 0 && u.Error == "" {
		u.Error = strings.Join(errs, "; ")
	}
	return nil
}

// FromResult is the view of one user's dry-run result at now (without
// last uses, which the pass does not read for every key).
func FromResult(res keyrot.UserResult, now time.Time) User {
	u := User{Name: res.User, Exempt: res.ExemptReason, Missing: res.Missing, Next: res.Next, NextAt: res.NextAt}
	if res.Exempt && u.Exempt == "" {
		u.Exempt = "exempt"
	}
	s := res.Secret
	u.Generation = s.Generation
	u.FailingSince = s.FailingSince
	if res.Current != nil {
		u.Keys = append(u.Keys, Key{ID: res.Current.ID, Status: res.Current.Status, Role: RoleCurrent, Created: res.Current.CreateDate, CurrentSince: res.CurrentSince})
	}
	for _, k := range res.Others {
		key := Key{ID: k.ID, Status: k.Status, Created: k.CreateDate, InactiveSince: s.Inactive[k.ID]}
		r, retiring := res.Retiring[k.ID]
		switch {
		case s.Pending != nil && s.Pending.KeyID == k.ID:
			key.Role = RolePending
		case retiring && r.Adopted:
			key.Role = RoleAdopted
		case retiring || s.Owns(k.ID):
			key.Role = RolePrevious
		default:
			key.Role = RoleUnmanaged
		}
		if retiring {
			key.DeactivateAt, key.DeleteAt = r.DeactivateAt, r.DeleteAt
			if !r.InactiveSince.IsZero() {
				key.InactiveSince = r.InactiveSince
			}
		}
		u.Keys = append(u.Keys, key)
	}
	for _, st := range res.Planned {
		u.Due = append(u.Due, StepText(st))
	}
	for _, w := range res.Warnings {
		u.Warnings = append(u.Warnings, Warning{Kind: w.Warning, KeyID: w.KeyID, Summary: w.Summary})
	}
	if res.Missing {
		u.Error = "IAM user not found"
	}
	if res.Err != nil {
		u.Error = res.Err.Error()
	}
	u.History = history(u, s)
	return u
}

// StepText describes a planned step in one line: "deactivate AKIA... (reason)".
func StepText(s keyrot.Step) string {
	t := string(s.Kind)
	if s.KeyID != "" {
		t += " " + s.KeyID
	}
	if s.Reason != "" {
		t += " (" + s.Reason + ")"
	}
	return t
}

// history is what IAM's key dates and the records on the secret show
// happened, newest first.
func history(u User, s keyrot.SecretState) []Happening {
	var h []Happening
	for _, k := range u.Keys {
		h = append(h, Happening{At: k.Created, KeyID: k.ID, What: "key created", From: "IAM"})
		if !k.CurrentSince.IsZero() {
			h = append(h, Happening{At: k.CurrentSince, KeyID: k.ID, What: "made current", From: "secret"})
		}
		if !k.InactiveSince.IsZero() {
			h = append(h, Happening{At: k.InactiveSince, KeyID: k.ID, What: "deactivated (or first seen inactive)", From: "secret"})
		}
		if seen, ok := s.Seen[k.ID]; ok {
			h = append(h, Happening{At: seen, KeyID: k.ID, What: "first seen: a key keyrot did not create", From: "secret"})
		}
	}
	if s.Intent != nil {
		h = append(h, Happening{At: s.Intent.At, What: fmt.Sprintf("rotation to generation %d begun, not finished", s.Intent.Generation), From: "secret"})
	}
	if !s.FailingSince.IsZero() {
		h = append(h, Happening{At: s.FailingSince, What: "failing: rotation failure reported", From: "secret"})
	}
	kinds := make([]string, 0, len(s.Warned))
	for k := range s.Warned {
		kinds = append(kinds, string(k))
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		rec := s.Warned[keyrot.WarningKind(k)]
		h = append(h, Happening{At: rec.At, KeyID: rec.KeyID, What: "warning emailed: " + k, From: "secret"})
	}
	sortHistory(h)
	return h
}

func sortHistory(h []Happening) {
	sort.SliceStable(h, func(i, j int) bool { return h[i].At.After(h[j].At) })
}
