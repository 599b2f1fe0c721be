package keyrot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// UserSelector says which IAM users keyrot manages and which it exempts.
type UserSelector struct {
	// Names are managed by name.
	Names []string
	// Tag manages every user carrying it: "key=value", or "key" for any value.
	Tag string
	// PathPrefix limits tag selection (and named users) to an IAM path.
	PathPrefix string
	// ExemptGroup: members of this IAM group are skipped and listed as exempt.
	ExemptGroup string
	// ExemptTag: users carrying this tag ("key=value" or "key") are exempt.
	ExemptTag string
}

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

// ResolvedUser is a managed user, as the selector found it.
type ResolvedUser struct {
	User         User
	Missing      bool // named in the config but not in IAM
	Exempt       bool
	ExemptReason string
}

// ResolveUsers lists the managed users: the named ones and, if a tag is
// configured, every user under the path prefix carrying it, with exemptions
// marked. Named users missing from IAM are returned with Missing set.
func (r *Rotator) ResolveUsers(ctx context.Context) ([]ResolvedUser, error) {
	return r.resolveUsers(ctx, nil)
}

// resolveUsers resolves the managed users, or only those named in only
// (without listing every IAM user: a pass for the users due now costs IAM
// calls for those users alone).
func (r *Rotator) resolveUsers(ctx context.Context, only []string) ([]ResolvedUser, error) {
	sel := r.cfg.Users
	candidates := slices.Clone(sel.Names)
	named := map[string]bool{}
	for _, n := range sel.Names {
		named[n] = true
	}
	if len(only) > 0 {
		candidates = slices.Clone(only)
	} else if sel.Tag != "" {
		all, err := r.cfg.Keys.ListUsers(ctx, sel.PathPrefix)
		if err != nil {
			return nil, fmt.Errorf("keyrot: list users: %w", err)
		}
		for _, u := range all {
			if !named[u.Name] {
				candidates = append(candidates, u.Name)
			}
		}
	}
	exemptMembers := map[string]bool{}
	if sel.ExemptGroup != "" {
		members, err := r.cfg.Keys.GroupMembers(ctx, sel.ExemptGroup)
		if err != nil {
			return nil, fmt.Errorf("keyrot: read exempt group %q: %w", sel.ExemptGroup, err)
		}
		for _, m := range members {
			exemptMembers[m] = true
		}
	}
	out := make([]ResolvedUser, len(candidates))
	keep := make([]bool, len(candidates))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for i, name := range candidates {
		g.Go(func() error {
			u, err := r.cfg.Keys.GetUser(gctx, name)
			switch {
			case errors.Is(err, ErrUserNotFound):
				out[i], keep[i] = ResolvedUser{User: User{Name: name}, Missing: true}, named[name]
				return nil
			case err != nil:
				return fmt.Errorf("keyrot: get user %q: %w", name, err)
			}
			out[i], keep[i] = r.resolveUser(u, named[name], exemptMembers[name])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var users []ResolvedUser
	for i, u := range out {
		if keep[i] {
			users = append(users, u)
		}
	}
	slices.SortFunc(users, func(a, b ResolvedUser) int { return strings.Compare(a.User.Name, b.User.Name) })
	return users, nil
}

// resolveUser applies the selector to one IAM user: whether it is managed
// (named, or tagged under the path prefix) and whether it is exempt.
func (r *Rotator) resolveUser(u User, named, inExemptGroup bool) (ResolvedUser, bool) {
	sel := r.cfg.Users
	if !named && !tagMatches(u.Tags, sel.Tag) {
		return ResolvedUser{}, false
	}
	if sel.PathPrefix != "" && !strings.HasPrefix(u.Path, sel.PathPrefix) {
		return ResolvedUser{}, false
	}
	res := ResolvedUser{User: u}
	switch {
	case inExemptGroup:
		res.Exempt, res.ExemptReason = true, "member of group "+sel.ExemptGroup
	case sel.ExemptTag != "" && tagMatches(u.Tags, sel.ExemptTag):
		res.Exempt, res.ExemptReason = true, "tagged "+sel.ExemptTag
	}
	return res, true
}

// tagMatches reports whether tags carry want ("key=value", or "key" for any value).
func tagMatches(tags map[string]string, want string) bool {
	if want == "" {
		return false
	}
	k, v, hasValue := strings.Cut(want, "=")
	got, ok := tags[k]
	return ok && (!hasValue || got == v)
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

// warn sends a standing warning unless the secret records that the same
// warning went out within WarnEvery (WarnRecord.Repeats), and records that
// it did. This record alone decides: the notifier sends what it is given.
func (r *Rotator) warn(ctx context.Context, u User, s SecretState, w Event, now time.Time) {
	rec, ok := s.Warned[w.Warning]
	unstoredKey := u.Name + "/" + string(w.Warning)
	if !s.Exists && w.Warning == WarnUserDeleted {
		r.mu.Lock()
		rec, ok = r.unstored[unstoredKey]
		r.mu.Unlock()
	}
	if ok && rec.Repeats(w.KeyID, now, r.cfg.WarnEvery) {
		r.log.Debug("warning already sent", "user", u.Name, "warning", w.Warning, "key_id", w.KeyID, "sent_at", rec.At.UTC().Format(time.RFC3339))
		return
	}
	r.emit(ctx, u, w)
	if !s.Exists && w.Warning == WarnUserDeleted {
		// No IAM user to make a secret for: this process remembers.
		r.mu.Lock()
		r.unstored[unstoredKey] = WarnRecord{KeyID: w.KeyID, At: now}
		r.mu.Unlock()
		return
	}
	if !s.Exists {
		if err := r.cfg.Secrets.Init(ctx, u); err != nil {
			r.log.Warn("create secret to record warning sent", "user", u.Name, "warning", w.Warning, "error", err)
			return
		}
	}
	if err := r.cfg.Secrets.MarkWarned(ctx, u.Name, w.Warning, w.KeyID, now); err != nil {
		r.log.Warn("record warning sent", "user", u.Name, "warning", w.Warning, "error", err)
	}
}

// clearEndedWarnings drops the records of warnings that no longer hold, so
// they are sent at once if they come back.
func (r *Rotator) clearEndedWarnings(ctx context.Context, o Observation, standing map[WarningKind]bool) {
	for kind := range o.Secret.Warned {
		if standing[kind] || kind == WarnKeyInUse {
			continue // key_in_use is told by a step, not a standing condition: a retried step must not repeat it
		}
		if err := r.cfg.Secrets.ClearWarned(context.WithoutCancel(ctx), o.User.Name, kind); err != nil {
			r.log.Warn("clear ended warning", "user", o.User.Name, "warning", kind, "error", err)
		}
	}
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

// stepTimeout bounds a step once started; shutdown does not cut it short.
func (r *Rotator) stepTimeout() time.Duration { return r.cfg.Policy.VerifyTimeout + 2*time.Minute }

func (r *Rotator) hook(ctx context.Context, point string) error {
	if r.cfg.StepHook == nil {
		return nil
	}
	if err := r.cfg.StepHook(ctx, point); err != nil {
		return fmt.Errorf("step hook at %s: %w", point, err)
	}
	return nil
}

// do carries out one step. It runs on a context that shutdown does not
// cancel, so a rotation step is never cut in half.
func (r *Rotator) do(parent context.Context, u User, obs Observation, st Step) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), r.stepTimeout())
	defer cancel()
	log := r.log.With("user", u.Name, "step", st.Kind)
	if st.KeyID != "" {
		log = log.With("key_id", st.KeyID)
	}
	log.Debug("step", "reason", st.Reason)
	now := r.cfg.Clock.Now()
	if !obs.Secret.Exists && keepsRecord(st.Kind) {
		if err := r.cfg.Secrets.Init(ctx, u); err != nil {
			return fmt.Errorf("%s for user %q: create the secret that keeps its records: %w", st.Kind, u.Name, err)
		}
	}
	var err error
	switch st.Kind {
	case StepCreate:
		err = r.create(ctx, u, obs, st.Intent)
	case StepPromote:
		if st.Pending.Creds.SecretAccessKey == "" {
			err = fmt.Errorf("pending key %s has no stored secret", st.Pending.KeyID)
		} else {
			err = r.verifyAndPromote(ctx, u, obs, *st.Pending, st.Pending.Creds)
		}
	case StepDeactivate:
		err = r.deactivate(ctx, u, obs, st.KeyID)
	case StepRecordInactive:
		err = r.cfg.Secrets.MarkInactive(ctx, u.Name, st.KeyID, now)
	case StepRecordSeen:
		err = r.cfg.Secrets.MarkSeen(ctx, u.Name, st.KeyID, now)
	case StepDelete:
		err = r.delete(ctx, u, st.KeyID)
	case StepClearIntent:
		err = r.cfg.Secrets.ClearIntent(ctx, u.Name)
	case StepForget:
		err = r.forget(ctx, u, st)
	case StepReport:
		err = r.report(ctx, u, r.recordedEvent(obs, st))
	case StepRecordTimings:
		err = r.cfg.Secrets.SetTimings(ctx, u.Name, r.cfg.Policy.Timings())
	case StepDeliver:
		err = r.deliver(ctx, u, obs, st)
	default:
		err = fmt.Errorf("unknown step %q", st.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s for user %q: %w", st.Kind, u.Name, err)
	}
	return r.hook(ctx, "after-"+string(st.Kind))
}

// keepsRecord reports whether a step writes to the user's secret, which a
// user keyrot has not rotated yet may not have.
func keepsRecord(k StepKind) bool {
	switch k {
	case StepDeactivate, StepRecordInactive, StepRecordSeen:
		return true
	}
	return false
}

// storeAttempts bounds how often a new key's store is retried while the
// secret exists only in memory.
const storeAttempts = 6

func (r *Rotator) create(ctx context.Context, u User, obs Observation, intent Intent) error {
	intent.At = r.cfg.Clock.Now()
	if err := r.cfg.Secrets.BeginCreate(ctx, u, intent); err != nil {
		return fmt.Errorf("record intent: %w", err)
	}
	if err := r.hook(ctx, "after-intent"); err != nil {
		return err
	}
	creds, err := r.cfg.Keys.CreateAccessKey(ctx, u.Name)
	if err != nil {
		// Only a refusal proves nothing was created; otherwise the key may
		// exist, and the intent lets the orphan cleanup find it.
		if errors.Is(err, ErrKeyLimit) || errors.Is(err, ErrUserNotFound) {
			if cerr := r.cfg.Secrets.ClearIntent(ctx, u.Name); cerr != nil {
				r.log.Warn("clear intent after failed create", "user", u.Name, "error", cerr)
			}
		}
		return fmt.Errorf("create access key: %w", err)
	}
	creds.Generation = intent.Generation
	if err := r.hook(ctx, "after-create-key"); err != nil {
		return err
	}
	// The secret exists only in this response: store it before anything else.
	var stored StoredKey
	for attempt := 1; ; attempt++ {
		stored, err = r.cfg.Secrets.StorePending(ctx, intent, creds)
		if err == nil || errors.Is(err, ErrConflict) || attempt == storeAttempts {
			break
		}
		r.log.Warn("store new key failed; retrying", "user", u.Name, "key_id", creds.AccessKeyID, "attempt", attempt, "error", err)
		_ = storeBackoff.Wait(ctx, r.cfg.Clock, attempt) // a cancelled ctx: the next store fails and says why
	}
	if err != nil {
		return r.abandonUnstored(ctx, u, creds.AccessKeyID, err)
	}
	if err := r.hook(ctx, "after-store-pending"); err != nil {
		return err
	}
	return r.verifyAndPromote(ctx, u, obs, stored, creds)
}

// abandonUnstored deals with a key keyrot created and could not store:
// nobody can be using it, so it is deactivated at once and recorded as
// keyrot's own, to be deleted after DeleteAfter like any key on its way
// out. Its deletion waits like every other. If neither can be done, the
// intent stays and the key will be treated as one keyrot did not create.
func (r *Rotator) abandonUnstored(ctx context.Context, u User, keyID string, storeErr error) error {
	var problems []error
	if err := r.cfg.Keys.SetKeyStatus(ctx, u.Name, keyID, KeyInactive); err != nil && !errors.Is(err, ErrKeyNotFound) {
		problems = append(problems, fmt.Errorf("deactivate it: %w", err))
	}
	now := r.cfg.Clock.Now() // after the call: its deletion counts from here
	conflict := errors.Is(storeErr, ErrConflict)
	if err := r.cfg.Secrets.MarkInactive(ctx, u.Name, keyID, now); err != nil {
		problems = append(problems, fmt.Errorf("record it: %w", err))
	} else if !conflict { // on a conflict the intent is the other writer's
		if err := r.cfg.Secrets.ClearIntent(ctx, u.Name); err != nil {
			r.log.Warn("clear intent after failed store", "user", u.Name, "error", err)
		}
	}
	if len(problems) == 0 {
		r.emit(ctx, u, Event{Kind: EventWarning, Warning: WarnOrphanKey, KeyID: keyID,
			Summary: fmt.Sprintf("key %s of %s was created but could not be stored, so nothing can use it; it is deactivated and will be deleted", keyID, u.Name),
			Next:    fmt.Sprintf("key %s will be deleted", keyID), NextAt: now.Add(r.cfg.Policy.DeleteAfter)})
	}
	what := "store key " + keyID + " as pending"
	if conflict {
		what = "store key " + keyID + ": another keyrot is rotating this user"
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w (and the unstored key could not be set aside: %w)", what, storeErr, errors.Join(problems...))
	}
	return fmt.Errorf("%s: %w (the unstored key is deactivated)", what, storeErr)
}

// ceilSecond is t rounded up to the second, as the secret stores times.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

func (r *Rotator) verifyAndPromote(ctx context.Context, u User, obs Observation, pending StoredKey, creds Credentials) error {
	if err := r.verify(ctx, creds); err != nil {
		return err
	}
	if err := r.hook(ctx, "after-verify"); err != nil {
		return err
	}
	previous := obs.Secret.PreviousKeyID
	if cur := obs.Secret.Current; cur != nil && cur.KeyID != pending.KeyID {
		previous = cur.KeyID
	}
	since := r.cfg.Clock.Now()
	if err := r.cfg.Secrets.Promote(ctx, u.Name, pending, previous, since, r.cfg.Policy.Timings()); err != nil {
		return fmt.Errorf("promote key %s: %w", pending.KeyID, err)
	}
	// The key became current when the pointer was written, which a slow
	// Promote (retries through throttling, a lost response) can put seconds
	// after since, and the previous key's deactivation counts from since.
	// If Promote returned after the second since is stored as (rounded
	// up), the pointer is written again with that time (Promote is safe to
	// repeat). Found by bench/chaos.sh.
	if done, stored := r.cfg.Clock.Now(), ceilSecond(since); done.After(stored) {
		if err := r.cfg.Secrets.Promote(ctx, u.Name, pending, previous, done, r.cfg.Policy.Timings()); err != nil {
			return fmt.Errorf("promote key %s: record when it became current: %w", pending.KeyID, err)
		}
		since = done
	}
	creds.CurrentSince, creds.Timings = since, r.cfg.Policy.Timings()
	creds = creds.Annotate(since)
	if r.cfg.Publisher != nil {
		r.cfg.Publisher.Publish(creds)
	}
	obs.Secret.Current, obs.Secret.CurrentSince, obs.Secret.PreviousKeyID = &pending, since, previous
	return r.report(ctx, u, r.createdEvent(obs, creds.AccessKeyID))
}

// createdEvent is the key_created event of keyID, current since
// o.Secret.CurrentSince.
func (r *Rotator) createdEvent(o Observation, keyID string) Event {
	since := o.Secret.CurrentSince
	e := Event{Kind: EventKeyCreated, KeyID: keyID, Summary: fmt.Sprintf("new access key %s is current for %s", keyID, o.User.Name)}
	if outgoing := r.cfg.Policy.Outgoing(o.Secret, o.Keys, keyID); len(outgoing) > 0 {
		e.Next, e.NextAt = fmt.Sprintf("previous key %s will be deactivated", strings.Join(outgoing, ", ")), since.Add(r.cfg.Policy.DeactivateAfter)
	} else if o.Secret.Current != nil {
		e.Next, e.NextAt = "next rotation", o.Secret.Current.CreateDate.Add(r.cfg.Policy.RotateEvery)
	}
	return e
}

// recordedEvent rebuilds an event recorded with its change and found
// unreported by a later pass.
func (r *Rotator) recordedEvent(o Observation, st Step) Event {
	switch st.Report {
	case EventKeyCreated:
		return r.createdEvent(o, st.KeyID)
	case EventKeyDeactivated:
		at := o.Secret.Inactive[st.KeyID]
		return r.deactivatedEvent(o.User.Name, st.KeyID, at, time.Time{})
	default:
		return Event{Kind: st.Report, KeyID: st.KeyID, Summary: fmt.Sprintf("%s: access key %s of %s", st.Report, st.KeyID, o.User.Name)}
	}
}

func (r *Rotator) deactivatedEvent(user, keyID string, at, lastUsed time.Time) Event {
	return Event{Kind: EventKeyDeactivated, KeyID: keyID, LastUsed: lastUsed,
		Summary: fmt.Sprintf("access key %s of %s is now inactive", keyID, user),
		Next:    fmt.Sprintf("key %s will be deleted", keyID), NextAt: at.Add(r.cfg.Policy.DeleteAfter)}
}

// report tells of a key event that was recorded as unreported with its
// change, then clears the record. An event told whose record could not be
// cleared is not told again by this process.
func (r *Rotator) report(ctx context.Context, u User, e Event) error {
	id := u.Name + "/" + string(e.Kind) + "/" + e.KeyID
	r.mu.Lock()
	told := r.told[id]
	r.told[id] = true
	r.mu.Unlock()
	if !told {
		r.emit(ctx, u, e)
	}
	if err := r.cfg.Secrets.Reported(ctx, u.Name, e.KeyID); err != nil {
		return fmt.Errorf("record %s of key %s as reported: %w", e.Kind, e.KeyID, err)
	}
	r.mu.Lock()
	delete(r.told, id)
	r.mu.Unlock()
	return nil
}

func (r *Rotator) verify(ctx context.Context, creds Credentials) error {
	deadline := r.cfg.Clock.Now().Add(r.cfg.Policy.VerifyTimeout)
	for attempt := 1; ; attempt++ {
		err := r.cfg.Verifier.VerifyKey(ctx, creds)
		if err == nil {
			return nil
		}
		if !r.cfg.Clock.Now().Before(deadline) || ctx.Err() != nil {
			return fmt.Errorf("verify new key %s with STS: not accepted within %s (left pending; the next pass retries): %w",
				creds.AccessKeyID, FormatDuration(r.cfg.Policy.VerifyTimeout), err)
		}
		_ = verifyBackoff.Wait(ctx, r.cfg.Clock, attempt) // a cancelled ctx ends the loop above
	}
}

// The retries of a step within one pass: storing a new key (while it
// exists only in memory) and proving it works through IAM's propagation.
var (
	storeBackoff  = Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second}
	verifyBackoff = Backoff{Initial: time.Second, Max: 8 * time.Second}
)

func (r *Rotator) deactivate(ctx context.Context, u User, obs Observation, keyID string) error {
	now := r.cfg.Clock.Now()
	lastUsed, err := r.cfg.Keys.KeyLastUsed(ctx, keyID)
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return fmt.Errorf("last use of key %s: %w", keyID, err)
	}
	since := obs.Secret.CurrentSince
	if !since.IsZero() && lastUsed.After(since) {
		r.warn(ctx, u, obs.Secret, Event{Kind: EventWarning, Warning: WarnKeyInUse, KeyID: keyID, LastUsed: lastUsed,
			Summary: fmt.Sprintf("key %s was used at %s, after its successor became current; whatever used it will fail once it is deactivated", keyID, lastUsed.UTC().Format(time.RFC3339))}, now)
	}
	// The record goes first, so that a crash after the call still leaves
	// the key keyrot's and its deactivation to be told. The deletion counts
	// from it, and the call can take long (retries through throttling), so
	// it first holds the latest moment the call can take effect, the end of
	// the step, and the moment the call returned once it has; a pass that
	// finds the key Inactive under a record still ahead records its own
	// time (retireKey).
	if err := r.cfg.Secrets.MarkDeactivating(ctx, u.Name, keyID, now.Add(r.stepTimeout())); err != nil {
		return fmt.Errorf("record deactivation of key %s: %w", keyID, err)
	}
	if err := r.hook(ctx, "after-mark-inactive"); err != nil {
		return err
	}
	if err := r.cfg.Keys.SetKeyStatus(ctx, u.Name, keyID, KeyInactive); err != nil {
		if errors.Is(err, ErrKeyNotFound) {
			return nil // already gone; the next pass forgets it
		}
		return fmt.Errorf("deactivate key %s: %w", keyID, err)
	}
	if err := r.hook(ctx, "after-set-inactive"); err != nil {
		return err
	}
	inactiveAt := r.cfg.Clock.Now()
	if err := r.cfg.Secrets.MarkInactive(ctx, u.Name, keyID, inactiveAt); err != nil {
		r.log.Warn("record when the key became inactive; the next pass records it", "user", u.Name, "key_id", keyID, "error", err)
	}
	return r.report(ctx, u, r.deactivatedEvent(u.Name, keyID, inactiveAt, lastUsed))
}

func (r *Rotator) delete(ctx context.Context, u User, keyID string) error {
	err := r.cfg.Keys.DeleteAccessKey(ctx, u.Name, keyID)
	if err != nil && !errors.Is(err, ErrKeyNotFound) {
		return fmt.Errorf("delete key %s: %w", keyID, err)
	}
	if err := r.hook(ctx, "after-delete-key"); err != nil {
		return err
	}
	return r.forget(ctx, u, Step{Kind: StepForget, KeyID: keyID, Report: EventKeyDeleted})
}

// forget drops the records of a key IAM no longer has, first telling of
// its deletion if the step says so; the records are what shows that the
// deletion is still to be told.
func (r *Rotator) forget(ctx context.Context, u User, st Step) error {
	id := u.Name + "/" + string(st.Report) + "/" + st.KeyID
	if st.Report != "" {
		r.mu.Lock()
		told := r.told[id]
		r.told[id] = true
		r.mu.Unlock()
		if !told {
			r.emit(ctx, u, Event{Kind: st.Report, KeyID: st.KeyID, Summary: fmt.Sprintf("access key %s of %s was deleted", st.KeyID, u.Name)})
		}
	}
	if err := r.cfg.Secrets.Forget(ctx, u.Name, st.KeyID); err != nil {
		return fmt.Errorf("forget deleted key %s: %w", st.KeyID, err)
	}
	r.mu.Lock()
	delete(r.told, id)
	r.mu.Unlock()
	return nil
}

// failed counts a failed pass for the user and sends FAILED once per
// incident, when the failures have lasted past the threshold. Every
// failure is logged; a failure the next pass repairs costs no email.
// Throttling is a reason to retry later, never an incident by itself.
func (r *Rotator) failed(ctx context.Context, u User, s SecretState, keyID string, err error) {
	now := r.cfg.Clock.Now()
	throttled := IsThrottle(err)
	msg := RedactSecrets(err.Error())
	r.mu.Lock()
	inc := r.incidents[u.Name]
	if inc == nil && !throttled {
		inc = &incident{since: now}
		if !s.FailingSince.IsZero() {
			// A reported incident that a restart interrupted goes on.
			inc.since, inc.reported = s.FailingSince, true
		}
		r.incidents[u.Name] = inc
	}
	due := false
	if inc != nil {
		inc.ended = false
		if !throttled {
			inc.failures++
		}
		due = !inc.reported && inc.failures > 0 && (inc.failures >= r.cfg.FailureThreshold || now.Sub(inc.since) >= r.cfg.FailureWindow)
		if due {
			inc.reported = true
		}
	}
	failures, since := 0, now
	if inc != nil {
		failures, since = inc.failures, inc.since
	}
	r.mu.Unlock()

	attrs := []any{"user", u.Name, "error", msg, "failures", failures, "throttled", throttled}
	if keyID != "" {
		attrs = append(attrs, "key_id", keyID)
	}
	if !due {
		r.log.Warn("pass failed; the next pass retries", attrs...)
		return
	}
	r.emit(ctx, u, Event{Kind: EventRotationFailed, KeyID: keyID, Err: msg,
		Summary: fmt.Sprintf("rotation of %s has failed %d times since %s", u.Name, failures, since.UTC().Format(time.RFC3339)),
		Next:    "keyrot keeps retrying and says when it works again"})
	if s.Exists {
		if err := r.cfg.Secrets.MarkFailing(context.WithoutCancel(ctx), u.Name, since); err != nil {
			r.log.Warn("record reported failure", "user", u.Name, "error", err)
		}
	}
}

// recovered ends the user's failure incident after a pass that worked,
// telling people if they were told it failed.
func (r *Rotator) recovered(ctx context.Context, u User, s SecretState) {
	r.mu.Lock()
	inc := r.incidents[u.Name]
	if inc == nil && !s.FailingSince.IsZero() {
		inc = &incident{since: s.FailingSince, reported: true} // reported before a restart
	}
	tell := inc != nil && inc.reported && !inc.ended
	if tell {
		inc.ended = true
	}
	r.mu.Unlock()
	if inc == nil {
		return
	}
	if tell {
		r.emit(ctx, u, Event{Kind: EventRotationRecovered,
			Summary: fmt.Sprintf("rotation of %s works again (failing since %s)", u.Name, inc.since.UTC().Format(time.RFC3339))})
	}
	if !s.FailingSince.IsZero() {
		if err := r.cfg.Secrets.MarkFailing(context.WithoutCancel(ctx), u.Name, time.Time{}); err != nil {
			r.log.Warn("clear the record of an ended failure", "user", u.Name, "error", err)
			r.mu.Lock()
			r.incidents[u.Name] = inc // cleared on a later pass, not told again
			r.mu.Unlock()
			return
		}
	}
	r.mu.Lock()
	delete(r.incidents, u.Name)
	r.mu.Unlock()
}

// eventMessage is an event's log message: short and the same for every
// event of its kind (key created, rotation failed, ...); the sentence for a
// person is its summary attribute.
func eventMessage(k EventKind) string { return strings.ReplaceAll(string(k), "_", " ") }

// emit logs an event and hands it to the notifier. Events never carry secrets.
func (r *Rotator) emit(ctx context.Context, u User, e Event) {
	e.User, e.Owner = u.Name, u.Tags[r.cfg.OwnerTag]
	if e.Time.IsZero() {
		e.Time = r.cfg.Clock.Now().UTC()
	}
	attrs := []any{"event", e.Kind, "user", e.User, "summary", e.Summary}
	if e.KeyID != "" {
		attrs = append(attrs, "key_id", e.KeyID)
	}
	if !e.NextAt.IsZero() {
		attrs = append(attrs, "next", e.Next, "next_at", e.NextAt.UTC().Format(time.RFC3339))
	}
	if e.Target != "" {
		attrs = append(attrs, "target", e.Target)
	}
	switch e.Kind {
	case EventRotationFailed, EventSyncFailed:
		r.log.Error(eventMessage(e.Kind), append(attrs, "error", e.Err)...)
	case EventWarning:
		r.log.Warn(eventMessage(e.Kind), append(attrs, "warning", e.Warning)...)
	default:
		r.log.Info(eventMessage(e.Kind), attrs...)
	}
	if err := r.cfg.Notifier.Notify(ctx, e); err != nil {
		r.log.Error("queue notification", "event", e.Kind, "user", e.User, "error", err)
	}
}
