package keyrot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// RotatorConfig is what a Rotator is built from. Keys, Verifier and Secrets
// are required; the rest have defaults.
type RotatorConfig struct {
	Keys      KeyManager
	Verifier  KeyVerifier
	Secrets   SecretStore
	Notifier  Notifier             // nil: events are only logged
	Publisher CredentialsPublisher // nil: nothing to update
	Policy    Policy
	Users     UserSelector
	// OwnerTag names the IAM user tag holding the owner's email address.
	OwnerTag string
	// WarnEvery is how often an unchanged standing warning (an unmanaged
	// key, a user stuck at two keys) is sent again (default 24h).
	WarnEvery time.Duration
	// Concurrency bounds how many users are reconciled at once (default 8).
	Concurrency int
	// FailureThreshold and FailureWindow say when a user's failing passes
	// become an incident worth an email: after FailureThreshold failed
	// passes in a row (default 3), or failing for FailureWindow (default
	// 10m), whichever comes first. A failure the next pass repairs is a
	// retry, only logged; throttling never opens an incident by itself.
	FailureThreshold int
	FailureWindow    time.Duration
	Clock            Clock
	Logger           *slog.Logger
	// StepHook, if set, is called at every step boundary with the name of
	// the boundary; an error stops the rotation there as a crash would.
	// Tests use it to inject crashes.
	StepHook func(ctx context.Context, point string) error
	// Fleet, if set, makes passes over every user observe the account in
	// bulk (see FleetConfig); nil observes each user with its own calls.
	Fleet *FleetConfig
	// Targets receive each user's new key after it is promoted; the
	// previous key waits for them (see Policy.SyncMaxHold).
	Targets []DeliveryTarget
	// SyncRetry is how soon a user whose delivery failed is looked at
	// again (default DefaultSyncRetry).
	SyncRetry time.Duration
	// OnDelivery, if set, is told the outcome of every delivery (metrics).
	OnDelivery func(target string, err error)
}

// Rotator carries out plans: it observes a user, asks PlanUser what is due,
// and does it, one step at a time. It is safe for concurrent use.
type Rotator struct {
	cfg       RotatorConfig
	log       *slog.Logger
	mu        sync.Mutex
	unstored  map[string]WarnRecord // warnings sent about users with no secret to record them on (a deleted IAM user), by user/kind
	incidents map[string]*incident  // users whose passes are failing
	// told holds events reported whose unreported mark could not be
	// cleared yet ("user/kind/key"), so the pass that clears it does not
	// tell them twice.
	told  map[string]bool
	busy  sync.Map    // users being reconciled: never two passes on one user at once
	fleet *fleetState // nil without bulk observation
	// deliveries are the failing deliveries ("user/target").
	deliveries map[string]*incident
}

// incident is a run of failed passes for one user.
type incident struct {
	since    time.Time
	failures int
	reported bool // the FAILED email went out
	ended    bool // recovery told; its record on the secret is still to clear
	err      string
}

// NewRotator checks cfg and fills in defaults.
func NewRotator(cfg RotatorConfig) (*Rotator, error) {
	if cfg.Keys == nil || cfg.Verifier == nil || cfg.Secrets == nil {
		return nil, errors.New("keyrot: rotator needs a key manager, a verifier and a secret store")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("keyrot: %w", err)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Notifier == nil {
		cfg.Notifier = NotifierFunc(func(context.Context, Event) error { return nil })
	}
	if cfg.OwnerTag == "" {
		cfg.OwnerTag = "keyrot:owner"
	}
	if cfg.WarnEvery <= 0 {
		cfg.WarnEvery = DefaultQuietPeriod
	}
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = 3
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = 10 * time.Minute
	}
	if cfg.SyncRetry <= 0 {
		cfg.SyncRetry = DefaultSyncRetry
	}
	r := &Rotator{cfg: cfg, log: cfg.Logger.With("system", "rotator"), unstored: map[string]WarnRecord{},
		incidents: map[string]*incident{}, told: map[string]bool{}}
	if cfg.Fleet != nil {
		if cfg.Fleet.Keys == nil || cfg.Fleet.Secrets == nil {
			return nil, errors.New("keyrot: bulk observation needs the account's keys and records")
		}
		fc := *cfg.Fleet
		fc.withDefaults()
		r.fleet = &fleetState{cfg: fc, known: map[string]knownKeys{}}
	}
	return r, nil
}

// Policy returns the rotation policy in force.
func (r *Rotator) Policy() Policy { return r.cfg.Policy }

// RunOptions tune one reconcile pass.
type RunOptions struct {
	// Users limits the pass to these users (they must still be selected).
	Users []string
	// Force rotates now, whatever the age of the current key.
	Force bool
	// DryRun plans and reports, and changes nothing.
	DryRun bool
}

// UserResult is what one pass found and did for one user.
type UserResult struct {
	User         string
	Exempt       bool
	ExemptReason string
	Missing      bool
	// Busy reports that another pass in this process was already working
	// on the user, so this one left it alone.
	Busy bool
	// Bulk reports that the user was planned from bulk data alone, with
	// nothing due within the pass interval (no per-user call).
	Bulk bool
	// Deferred reports that the pass ended (its deadline) before it got to
	// the user; the next pass takes it up.
	Deferred bool
	// Current is the current key as IAM lists it (nil if none), current since CurrentSince.
	Current      *AccessKey
	CurrentSince time.Time
	// Others are the user's other keys (previous, adopted, unmanaged).
	Others []AccessKey
	// Planned are the steps that were due (and, unless DryRun, done in order
	// until Err); Done are those that were carried out.
	Planned  []Step
	Done     []Step
	Warnings []Event
	NextAt   time.Time
	Next     string
	// Retiring is the plan's schedule for the keys on their way out.
	Retiring map[string]Retirement
	// Targets is each delivery target's state for the user.
	Targets []TargetState
	// Secret is the user's secret state as last observed, without any
	// secret access key (for views: status, report, the UI).
	Secret SecretState
	Err    error
}

// Summary is the outcome of one pass over all users.
type Summary struct {
	Users, Exempt                 int
	Created, Deactivated, Deleted int
	Warnings, Failed              int
	// Bulk counts the users planned from bulk data alone; Deferred those
	// the pass had no time left for.
	Bulk, Deferred int
	Results        []UserResult
	// NextAt is the earliest moment a user needs attention again.
	NextAt time.Time
}

// ReconcileAll runs one pass over every managed user (or opts.Users), with
// bounded concurrency; one failing user never stops the others. ctx ending
// stops new steps from starting; a step in flight runs to its end. The error
// is non-nil only if the users could not be listed. With bulk observation,
// a pass over every user (not forced) reads the account in bulk; users named
// in opts.Users are observed in full, in the order given (the scheduler
// gives them most overdue first).
func (r *Rotator) ReconcileAll(ctx context.Context, opts RunOptions) (Summary, error) {
	if r.fleet != nil && len(opts.Users) == 0 && !opts.Force {
		return r.reconcileFleet(ctx, opts)
	}
	users, err := r.resolveUsers(ctx, opts.Users)
	if err != nil {
		return Summary{}, err
	}
	if len(opts.Users) > 0 {
		order := make(map[string]int, len(opts.Users)) // as given: most overdue first
		for i, name := range opts.Users {
			order[name] = i
		}
		users = slices.DeleteFunc(users, func(u ResolvedUser) bool { _, ok := order[u.User.Name]; return !ok })
		if len(users) != len(order) {
			found := make(map[string]bool, len(users))
			for _, u := range users {
				found[u.User.Name] = true
			}
			for _, name := range opts.Users {
				if !found[name] {
					return Summary{}, fmt.Errorf("keyrot: user %q: %w", name, ErrUserNotManaged)
				}
			}
		}
		slices.SortStableFunc(users, func(a, b ResolvedUser) int { return order[a.User.Name] - order[b.User.Name] })
	}
	results := make([]UserResult, len(users))
	g := new(errgroup.Group)
	g.SetLimit(r.cfg.Concurrency)
	for i, u := range users {
		g.Go(func() error {
			results[i] = r.reconcile(ctx, u, opts)
			return nil
		})
	}
	_ = g.Wait() // reconcile reports failures in its result
	return summarize(results), nil
}

func summarize(results []UserResult) Summary {
	s := Summary{Users: len(results), Results: results}
	for _, res := range results {
		if res.Exempt {
			s.Exempt++
		}
		if res.Err != nil {
			s.Failed++
		}
		if res.Bulk {
			s.Bulk++
		}
		if res.Deferred {
			s.Deferred++
		}
		s.Warnings += len(res.Warnings)
		for _, st := range res.Done {
			switch st.Kind {
			case StepCreate, StepPromote:
				s.Created++
			case StepDeactivate:
				s.Deactivated++
			case StepDelete:
				s.Deleted++
			}
		}
		if !res.NextAt.IsZero() && (s.NextAt.IsZero() || res.NextAt.Before(s.NextAt)) {
			s.NextAt = res.NextAt
		}
	}
	return s
}

// Reconcile runs one pass for a single user by name.
func (r *Rotator) Reconcile(ctx context.Context, name string, opts RunOptions) (UserResult, error) {
	opts.Users = []string{name}
	sum, err := r.ReconcileAll(ctx, opts)
	if err != nil {
		return UserResult{}, err
	}
	res := sum.Results[0]
	return res, res.Err
}

// maxPlanRounds bounds how often one pass re-observes after acting, so that
// one pass can delete the previous key and then create its successor.
const maxPlanRounds = 4

func (r *Rotator) reconcile(ctx context.Context, u ResolvedUser, opts RunOptions) UserResult {
	res := UserResult{User: u.User.Name, Exempt: u.Exempt, ExemptReason: u.ExemptReason, Missing: u.Missing}
	log := r.log.With("user", u.User.Name)
	if u.Exempt {
		return res
	}
	if ctx.Err() != nil {
		res.Deferred = true
		return res
	}
	// A dry run changes nothing, so it neither waits for a pass that acts
	// nor holds one up: views of the fleet (the UI) must never delay a
	// rotation step.
	if !opts.DryRun {
		if _, held := r.busy.LoadOrStore(u.User.Name, struct{}{}); held {
			res.Busy = true
			return res
		}
		defer r.busy.Delete(u.User.Name)
	}
	seen := map[string]bool{}
	var last Observation
	var standing map[WarningKind]bool // warnings of the last plan
	if !opts.DryRun {
		defer func() { r.clearEndedWarnings(ctx, last, standing) }()
	}
	var lastAt time.Time       // when last was observed
	settled := false           // the last plan had nothing to do now
	tried := map[string]bool{} // delivery targets tried this pass
	delivering := false        // the last plan had a delivery to make
	if r.fleet != nil {
		// Bulk passes trust a settled full observation until the records change.
		r.fleet.forget(u.User.Name)
		defer func() {
			if settled && res.Err == nil && !last.UserMissing {
				r.fleet.remember(last, lastAt)
			}
		}()
	}
	for round := 0; round < maxPlanRounds; round++ {
		if ctx.Err() != nil {
			break
		}
		lastAt = r.cfg.Clock.Now()
		obs, err := r.observe(ctx, u)
		if err != nil && passOver(ctx, err) {
			res.Deferred = round == 0 // the pass's deadline, not a failure
			break
		}
		if err != nil {
			res.Err = err
			if !opts.DryRun {
				r.failed(ctx, u.User, last.Secret, "", err)
			}
			return res
		}
		now := r.cfg.Clock.Now()
		plan := PlanUser(obs, r.cfg.Policy, now, opts.Force && round == 0)
		last, standing = obs, map[WarningKind]bool{}
		res.describe(obs)
		res.NextAt, res.Next, res.Retiring = plan.NextAt, plan.Next, plan.Retiring
		delivering = slices.ContainsFunc(plan.Steps, func(st Step) bool { return st.Kind == StepDeliver })
		for _, w := range plan.Warnings {
			standing[w.Warning] = true
			if key := string(w.Warning) + "/" + w.KeyID; !seen[key] {
				seen[key] = true
				res.Warnings = append(res.Warnings, w)
				if !opts.DryRun {
					r.warn(ctx, u.User, obs.Secret, w, now)
				}
			}
		}
		if len(plan.Steps) == 0 {
			settled = true
			break
		}
		res.Planned = append(res.Planned, plan.Steps...)
		if opts.DryRun {
			break
		}
		// A delivery is tried once a pass; a failing one is retried by the next.
		steps := slices.DeleteFunc(slices.Clone(plan.Steps), func(st Step) bool { return st.Kind == StepDeliver && tried[st.Target] })
		if len(steps) == 0 {
			break
		}
		for _, st := range steps {
			if st.Kind == StepDeliver {
				tried[st.Target] = true
			}
			if ctx.Err() != nil {
				log.Info("stopping before next step", "step", st.Kind, "reason", context.Cause(ctx))
				return res
			}
			if err := r.do(ctx, u.User, obs, st); errors.Is(err, errDeliveryFailed) {
				continue // told and retried by the delivery's own incident, not done
			} else if err != nil {
				res.Err = err
				r.failed(ctx, u.User, obs.Secret, st.KeyID, err)
				return res
			}
			res.Done = append(res.Done, st)
		}
	}
	if !opts.DryRun && ctx.Err() == nil && !u.Missing {
		r.recovered(ctx, u.User, last.Secret)
	}
	res.Targets = r.targetStates(last)
	if retry := r.deliveryRetryAt(u.User.Name); delivering && !retry.IsZero() && (res.NextAt.IsZero() || retry.Before(res.NextAt)) {
		res.NextAt, res.Next = retry, "retry a failed delivery"
	}
	return res
}

func (res *UserResult) describe(o Observation) {
	res.Current, res.Others, res.CurrentSince = nil, nil, o.Secret.CurrentSince
	res.Secret = o.Secret.WithoutSecrets()
	for _, k := range o.Keys {
		if o.Secret.Current != nil && k.ID == o.Secret.Current.KeyID {
			res.Current = &k
		} else {
			res.Others = append(res.Others, k)
		}
	}
}

func (r *Rotator) observe(ctx context.Context, u ResolvedUser) (Observation, error) {
	obs := Observation{User: u.User, UserMissing: u.Missing}
	if u.Missing {
		return obs, nil
	}
	keys, err := r.cfg.Keys.ListAccessKeys(ctx, u.User.Name)
	if errors.Is(err, ErrUserNotFound) {
		obs.UserMissing = true
		return obs, nil
	}
	if err != nil {
		return obs, fmt.Errorf("list access keys of user %q: %w", u.User.Name, err)
	}
	obs.Keys, obs.Targets = keys, r.targetsFor(u.User.Name)
	if obs.Secret, err = r.cfg.Secrets.Load(ctx, u.User.Name); err != nil {
		return obs, fmt.Errorf("load secret of user %q: %w", u.User.Name, err)
	}
	if need := LastUseNeeded(obs.Secret, keys); len(need) > 0 {
		obs.LastUsed = make(map[string]time.Time, len(need))
		for _, id := range need {
			if obs.LastUsed[id], err = r.cfg.Keys.KeyLastUsed(ctx, id); err != nil {
				return obs, fmt.Errorf("last use of key %s of user %q: %w", id, u.User.Name, err)
			}
		}
	}
	return obs, nil
}

// passOver reports whether err comes from the pass's own deadline (or
// cancellation), so the user is left for the next pass, not failed.
func passOver(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	_, hasDeadline := ctx.Deadline()
	return hasDeadline && errors.Is(err, context.DeadlineExceeded)
}
