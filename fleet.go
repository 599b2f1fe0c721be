package keyrot

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Bulk observation. A pass over a whole fleet reads the account in a
// handful of calls (every user with its tags and groups, IAM's credential
// report, every user's records from the tags of its secret) and turns them
// into Observations without per-user calls. Only a user whose records and
// the bulk data disagree, whose state is in motion, or whose next step is
// due within the next pass interval is observed the usual way (ListAccessKeys,
// its secret read, GetAccessKeyLastUsed when needed) before anything is done:
// a step is never taken on a bulk observation. PlanUser stays the one
// planner; this only makes its input cheaper.
//
// What the credential report cannot tell: it is up to four hours old (IAM
// regenerates it at most that often), and it lists at most two keys per user
// with their active flag, creation and last use, without their ids. So a
// user is judged from it only when it was generated after keyrot's records
// of the user last changed, or against keyrot's own last full observation of
// the user; and every user is also observed in full at least every
// FleetConfig.ObserveEvery. A key created or deleted by hand is therefore
// noticed within the report's age plus two pass intervals (about 4 h), and
// in any case within ObserveEvery plus a pass interval.

// AccountUser is an IAM user as the account-wide listing gives it: with its
// tags and the names of its groups.
type AccountUser struct {
	User
	Groups []string
}

// ReportedKey is an access key as IAM's credential report shows it: no id,
// only whether it is active, when it was created (last_rotated) and last used.
type ReportedKey struct {
	Active   bool
	Created  time.Time
	LastUsed time.Time
}

// CredentialReport is IAM's account-wide credential report.
type CredentialReport struct {
	// Generated is when IAM took the report; nothing after it is in it.
	Generated time.Time
	// Users maps a user name to its keys, oldest first (at most two).
	Users map[string][]ReportedKey
}

// ErrNoReport means there is no credential report to read now: none was
// generated, the last one expired, or one is still being generated.
var ErrNoReport = errors.New("no credential report available")

// FleetKeys reads a whole account's IAM users and keys in bulk (implemented
// by package iam). Every call waits on the same rate limiter as the rest.
type FleetKeys interface {
	// AccountUsers lists every IAM user with its tags and groups
	// (GetAccountAuthorizationDetails, up to 1,000 users a call).
	AccountUsers(ctx context.Context) ([]AccountUser, error)
	// CredentialReport reads the account's last credential report, or
	// returns ErrNoReport wrapped.
	CredentialReport(ctx context.Context) (CredentialReport, error)
	// GenerateCredentialReport asks IAM for a fresh report and says whether
	// the newest one is complete. IAM regenerates at most every four hours.
	GenerateCredentialReport(ctx context.Context) (complete bool, err error)
}

// FleetSecrets reads every user's records in bulk (implemented by package
// secretsmanager).
type FleetSecrets interface {
	// Records returns, by user name, the records of every user with a
	// primary secret, from its tags alone (ListSecrets, 100 secrets a
	// call): Current holds KeyID, Generation and Secret but no CreateDate
	// or value; Pending is never set.
	Records(ctx context.Context) (map[string]SecretState, error)
}

// FleetConfig turns on bulk observation for passes over every user.
type FleetConfig struct {
	Keys    FleetKeys
	Secrets FleetSecrets
	// ObserveEvery bounds how long a user may go without a full
	// observation (default 24h): the bound on noticing what the bulk data
	// cannot show.
	ObserveEvery time.Duration
	// PassEvery is how often passes over every user run (the daemon's
	// resync, the Lambda's schedule; default 1m). A user with a step due
	// within it is observed in full, and the full observations are spread
	// over ObserveEvery in slots of this length.
	PassEvery time.Duration
	// ReportMaxAge is the age at which a new credential report is asked
	// for (default 4h, IAM's own minimum).
	ReportMaxAge time.Duration
}

func (c *FleetConfig) withDefaults() {
	if c.ObserveEvery <= 0 {
		c.ObserveEvery = 24 * time.Hour
	}
	if c.PassEvery <= 0 {
		c.PassEvery = time.Minute
	}
	if c.ReportMaxAge <= 0 {
		c.ReportMaxAge = 4 * time.Hour
	}
}

// fleetState is what a Rotator keeps between bulk passes: the last
// credential report and, per managed user, the keys of its last full
// observation (a few hundred bytes a user; users no longer managed are
// dropped at each bulk pass).
type fleetState struct {
	cfg    FleetConfig
	mu     sync.Mutex
	report *CredentialReport
	known  map[string]knownKeys
}

// knownKeys is a full observation's keys, valid while the records it was
// made with are unchanged.
type knownKeys struct {
	keys    []AccessKey
	at      time.Time
	records string
}

// recordsPrint sums up the records a bulk read shows, to tell whether they
// changed since a full observation.
func recordsPrint(s SecretState) string {
	var b strings.Builder
	cur := ""
	if s.Current != nil {
		cur = s.Current.KeyID
	}
	fmt.Fprintf(&b, "%d %s %s %d %t", s.Generation, cur, s.PreviousKeyID, s.CurrentSince.Unix(), s.Intent != nil)
	for _, id := range sortedKeys(s.Inactive) {
		fmt.Fprintf(&b, " i:%s=%d", id, s.Inactive[id].Unix())
	}
	for _, id := range sortedKeys(s.Seen) {
		fmt.Fprintf(&b, " s:%s=%d", id, s.Seen[id].Unix())
	}
	for _, id := range sortedKeys(s.Unreported) {
		fmt.Fprintf(&b, " r:%s=%s", id, s.Unreported[id])
	}
	return b.String()
}

// remember keeps a settled full observation for later bulk passes.
func (f *fleetState) remember(o Observation, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known[o.User.Name] = knownKeys{keys: slices.Clone(o.Keys), at: at, records: recordsPrint(o.Secret)}
}

func (f *fleetState) forget(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.known, user)
}

// currentReport returns the freshest credential report it can get without
// waiting, asking IAM for a new one once the last is ReportMaxAge old. It
// costs no call while the report in hand is younger than that. A failure
// is logged: the pass goes on without the report (more users observed in full).
func (r *Rotator) currentReport(ctx context.Context, now time.Time) *CredentialReport {
	f := r.fleet
	f.mu.Lock()
	cached := f.report
	f.mu.Unlock()
	if cached != nil && now.Sub(cached.Generated) < f.cfg.ReportMaxAge {
		return cached
	}
	keep := func(rep CredentialReport) {
		if cached == nil || rep.Generated.After(cached.Generated) {
			cached = &rep
			f.mu.Lock()
			f.report = cached
			f.mu.Unlock()
		}
	}
	rep, err := f.cfg.Keys.CredentialReport(ctx)
	switch {
	case err == nil:
		keep(rep)
	case !errors.Is(err, ErrNoReport):
		r.log.Warn("read the credential report; users are observed one by one meanwhile", "error", err)
		return cached
	}
	if cached != nil && now.Sub(cached.Generated) < f.cfg.ReportMaxAge {
		return cached
	}
	complete, err := f.cfg.Keys.GenerateCredentialReport(ctx)
	if err != nil {
		r.log.Warn("generate the credential report", "error", err)
		return cached
	}
	if complete {
		if rep, err := f.cfg.Keys.CredentialReport(ctx); err == nil {
			keep(rep)
		}
	}
	return cached
}

// fleetView is one bulk read of the account.
type fleetView struct {
	users   []ResolvedUser
	records map[string]SecretState
	report  *CredentialReport
}

func (r *Rotator) readFleet(ctx context.Context, now time.Time) (fleetView, error) {
	var v fleetView
	all, err := r.fleet.cfg.Keys.AccountUsers(ctx)
	if err != nil {
		return v, fmt.Errorf("keyrot: list the account's users: %w", err)
	}
	v.users = r.selectAccountUsers(all)
	all = nil // the selection is all a long pass keeps
	if v.records, err = r.fleet.cfg.Secrets.Records(ctx); err != nil {
		return v, fmt.Errorf("keyrot: list the users' records: %w", err)
	}
	v.report = r.currentReport(ctx, now)
	return v, nil
}

// selectAccountUsers applies the selector to the account's users, as
// resolveUsers does with per-user reads.
func (r *Rotator) selectAccountUsers(all []AccountUser) []ResolvedUser {
	sel := r.cfg.Users
	named := map[string]bool{}
	for _, n := range sel.Names {
		named[n] = true
	}
	found := map[string]bool{}
	var users []ResolvedUser
	for _, au := range all {
		if !named[au.Name] && sel.Tag == "" {
			continue
		}
		inGroup := sel.ExemptGroup != "" && slices.Contains(au.Groups, sel.ExemptGroup)
		if res, ok := r.resolveUser(au.User, named[au.Name], inGroup); ok {
			users = append(users, res)
			found[au.Name] = true
		}
	}
	for _, n := range sel.Names {
		if !found[n] && !slices.ContainsFunc(all, func(au AccountUser) bool { return au.Name == n }) {
			users = append(users, ResolvedUser{User: User{Name: n}, Missing: true})
		}
	}
	slices.SortFunc(users, func(a, b ResolvedUser) int { return strings.Compare(a.User.Name, b.User.Name) })
	return users
}

// reconcileFleet is a pass over every managed user on bulk observation:
// users with nothing due soon are planned from the bulk data alone; the
// others are observed in full and reconciled, most overdue first, so that a
// pass cut short by its deadline (the Lambda's) leaves the least urgent
// users for the next one.
func (r *Rotator) reconcileFleet(ctx context.Context, opts RunOptions) (Summary, error) {
	now := r.cfg.Clock.Now()
	view, err := r.readFleet(ctx, now)
	if err != nil {
		return Summary{}, err
	}
	results := make([]UserResult, len(view.users))
	type job struct {
		i   int
		due time.Time
	}
	var jobs []job
	managed := map[string]bool{}
	for i, u := range view.users {
		managed[u.User.Name] = true
		res, due, full := r.bulkPlan(u, view, now)
		if full {
			jobs = append(jobs, job{i, due})
			continue
		}
		results[i] = res
	}
	sort.SliceStable(jobs, func(a, b int) bool { return jobs[a].due.Before(jobs[b].due) })
	g := new(errgroup.Group)
	g.SetLimit(r.cfg.Concurrency)
	for _, j := range jobs {
		g.Go(func() error {
			results[j.i] = r.reconcile(ctx, view.users[j.i], opts)
			return nil
		})
	}
	_ = g.Wait() // reconcile reports failures in its result
	r.fleet.mu.Lock()
	for name := range r.fleet.known {
		if !managed[name] {
			delete(r.fleet.known, name)
		}
	}
	r.fleet.mu.Unlock()
	return summarize(results), nil
}

// bulkPlan plans a user from the bulk data. It returns full (and when the
// user's most urgent step fell due, or now if unknown) when the user must be
// observed in full; otherwise the pass's result for the user.
func (r *Rotator) bulkPlan(u ResolvedUser, v fleetView, now time.Time) (UserResult, time.Time, bool) {
	res := UserResult{User: u.User.Name, Exempt: u.Exempt, ExemptReason: u.ExemptReason}
	if u.Exempt {
		return res, time.Time{}, false
	}
	why := ""
	st, ok := v.records[u.User.Name]
	switch {
	case u.Missing:
		why = "not in IAM"
	case !ok || !st.Exists:
		why = "no secret"
	case st.Current == nil:
		why = "no current key"
	case st.Intent != nil, len(st.Unreported) > 0, !st.FailingSince.IsZero(), len(st.Seen) > 0:
		why = "a rotation, a report, a failure or a foreign key in progress"
	case r.fullObservationDue(u.User.Name, now):
		why = "periodic full observation"
	}
	var keys []AccessKey
	if why == "" {
		keys, why = r.fleetKeys(u.User.Name, st, v.report)
	}
	if why != "" {
		r.log.Debug("observing in full", "user", u.User.Name, "reason", why)
		return res, now, true
	}
	cur := *st.Current
	for _, k := range keys {
		if k.ID == cur.KeyID {
			cur.CreateDate = k.CreateDate
		}
	}
	st.Current = &cur
	obs := Observation{User: u.User, Keys: keys, Secret: st, Targets: r.targetsFor(u.User.Name)}
	plan := PlanUser(obs, r.cfg.Policy, now, false)
	if len(plan.Steps) > 0 || len(plan.Warnings) > 0 || plan.NextAt.IsZero() || !plan.NextAt.After(now.Add(r.fleet.cfg.PassEvery)) {
		return res, overdueSince(obs, r.cfg.Policy, now), true
	}
	res.describe(obs)
	res.NextAt, res.Next, res.Bulk = plan.NextAt, plan.Next, true
	return res, time.Time{}, false
}

// overdueSince is when the user's earliest deadline fell (or falls): for
// ordering the users to observe in full, most overdue first.
func overdueSince(o Observation, p Policy, now time.Time) time.Time {
	at := now
	cur := o.Secret.Current
	if cur == nil {
		return at
	}
	consider := func(t time.Time) {
		if !t.IsZero() && t.Before(at) {
			at = t
		}
	}
	consider(cur.CreateDate.Add(p.RotateEvery))
	for _, k := range o.Keys {
		switch {
		case k.ID == cur.KeyID:
		case k.Status == KeyActive:
			consider(o.Secret.CurrentSince.Add(p.DeactivateAfter))
		default:
			if t, ok := o.Secret.Inactive[k.ID]; ok {
				consider(t.Add(p.DeleteAfter))
			}
		}
	}
	return at
}

// fullObservationDue says whether the user is due its periodic full
// observation: ObserveEvery after the last one this process made or, for a
// user it has not observed (a new process, a Lambda cold start), in the one
// pass slot a hash of its name gives it within each ObserveEvery.
func (r *Rotator) fullObservationDue(user string, now time.Time) bool {
	f := r.fleet
	f.mu.Lock()
	k, ok := f.known[user]
	f.mu.Unlock()
	if ok {
		return now.Sub(k.at) >= f.cfg.ObserveEvery
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(user))
	period := uint64(f.cfg.ObserveEvery)
	phase := (uint64(now.UnixNano()) + period - h.Sum64()%period) % period
	return phase < uint64(f.cfg.PassEvery)
}

// fleetKeys tells the user's keys, with their ids, from the last full
// observation (while the records are unchanged and no newer report
// disagrees) or from the credential report matched against the records; or
// why it cannot.
func (r *Rotator) fleetKeys(user string, st SecretState, rep *CredentialReport) ([]AccessKey, string) {
	r.fleet.mu.Lock()
	k, ok := r.fleet.known[user]
	r.fleet.mu.Unlock()
	var row []ReportedKey
	inReport := false
	if rep != nil {
		row, inReport = rep.Users[user]
	}
	if ok && k.records == recordsPrint(st) {
		if rep != nil && rep.Generated.After(k.at) {
			if !inReport {
				return nil, "not in the credential report"
			}
			if !sameKeys(row, k.keys) {
				return nil, "the credential report differs from the last observation"
			}
		}
		return k.keys, ""
	}
	switch {
	case rep == nil:
		return nil, "no credential report yet"
	case !inReport:
		return nil, "not in the credential report"
	case rep.Generated.Before(recordsChanged(st)):
		return nil, "the records changed after the credential report"
	}
	return matchReport(user, row, st)
}

// recordsChanged is when keyrot's records of the user last changed, as far
// as they date their changes.
func recordsChanged(s SecretState) time.Time {
	at := s.CurrentSince
	for _, t := range s.Inactive {
		at = later(at, t)
	}
	for _, t := range s.Seen {
		at = later(at, t)
	}
	return at
}

// matchReport names the report's keys after the records: the current key
// (the newest, active, created before it became current) and the previous
// one (active, or inactive as recorded). Anything else is a mismatch.
func matchReport(user string, row []ReportedKey, s SecretState) ([]AccessKey, string) {
	row = slices.Clone(row)
	slices.SortStableFunc(row, func(a, b ReportedKey) int { return a.Created.Compare(b.Created) })
	for _, k := range row {
		if k.Created.After(s.CurrentSince) {
			return nil, "a key newer than keyrot's current key"
		}
	}
	cur := AccessKey{ID: s.Current.KeyID, UserName: user, Status: KeyActive}
	switch len(row) {
	case 1:
		if !row[0].Active || len(s.Inactive) > 0 {
			return nil, "the credential report's key is not what the records expect"
		}
		cur.CreateDate = row[0].Created
		return []AccessKey{cur}, ""
	case 2:
		prev := s.PreviousKeyID
		if !row[1].Active || prev == "" || prev == cur.ID {
			return nil, "two keys where the records expect one"
		}
		cur.CreateDate = row[1].Created
		p := AccessKey{ID: prev, UserName: user, Status: KeyActive, CreateDate: row[0].Created}
		if _, recorded := s.Inactive[prev]; row[0].Active != (len(s.Inactive) == 0) || (!row[0].Active && (!recorded || len(s.Inactive) != 1)) {
			return nil, "the previous key's status differs from the records"
		}
		if !row[0].Active {
			p.Status = KeyInactive
		}
		return []AccessKey{p, cur}, ""
	}
	return nil, "no key in the credential report"
}

// sameKeys reports whether the report shows the keys a full observation
// saw: as many, with the same status and creation (to the second).
func sameKeys(row []ReportedKey, keys []AccessKey) bool {
	if len(row) != len(keys) {
		return false
	}
	row = slices.Clone(row)
	slices.SortStableFunc(row, func(a, b ReportedKey) int { return a.Created.Compare(b.Created) })
	keys = slices.Clone(keys)
	slices.SortStableFunc(keys, func(a, b AccessKey) int { return a.CreateDate.Compare(b.CreateDate) })
	for i, k := range keys {
		if row[i].Active != (k.Status == KeyActive) || !row[i].Created.Truncate(time.Second).Equal(k.CreateDate.Truncate(time.Second)) {
			return false
		}
	}
	return true
}
