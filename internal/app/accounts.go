package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awsorg "github.com/aws/aws-sdk-go-v2/service/organizations"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/organizations"
)

// Account is one AWS account keyrot works in.
type Account = organizations.Account

// Accounts runs keyrot in each account the accounts section selects: every
// account is its own unit, an App of its own (credentials from
// sts:AssumeRole, its own IAM rate limiter, its own users, its secrets kept
// in that account), sharing only the notifier. One account failing never
// holds up another; an account that cannot be worked in (its role missing,
// access denied, throttled) is reported once per incident, and again when
// it recovers. It is safe for concurrent use.
type Accounts struct {
	cfg      config.Config
	base     aws.Config // the management account's
	opts     Options
	log      *slog.Logger
	notifier keyrot.Notifier
	email    *email.Notifier
	list     func(ctx context.Context) ([]Account, error)
	// pass runs one account's pass; it is the account's App unless a test
	// replaces it.
	pass func(ctx context.Context, acct Account, opts keyrot.RunOptions) (keyrot.Summary, error)

	// PublisherFor, if set, gives each account's promoted credentials
	// somewhere to go (the API's cache for that account). Set it before
	// the first pass.
	PublisherFor func(accountID string) keyrot.CredentialsPublisher

	mu        sync.Mutex
	units     map[string]*App
	incidents map[string]*accountIncident
	closers   []func(context.Context) error
}

// accountIncident is a run of passes in which an account could not be worked in.
type accountIncident struct {
	since    time.Time
	failures int
	reported bool
}

// AccountResult is one account's pass.
type AccountResult struct {
	Account Account
	Summary keyrot.Summary
	// Err is why keyrot could not work in the account at all (its users
	// were not reached); failures of single users are in Summary.
	Err error
	// Duration is how long the account's pass took.
	Duration time.Duration
}

// AccountsSummary is a pass over every selected account.
type AccountsSummary struct {
	Accounts []AccountResult
}

// Failed counts the accounts that could not be worked in, and the users
// that failed in the others.
func (s AccountsSummary) Failed() (accounts, users, of int) {
	for _, r := range s.Accounts {
		if r.Err != nil {
			accounts++
		}
		users += r.Summary.Failed
		of += r.Summary.Users
	}
	return accounts, users, of
}

// accountThrottledThreshold is how many passes in a row an account may be
// throttled before that is an incident: throttling usually clears itself.
const accountThrottledThreshold = 3

// NewAccounts builds the multi-account engine for cfg (cfg.Accounts must
// be enabled). opts.AWS (or the SDK's chain) is the management account's
// configuration: it lists the organization, assumes the roles and sends
// the emails; nothing is stored in it.
func NewAccounts(ctx context.Context, cfg config.Config, opts Options) (*Accounts, error) {
	if !cfg.Accounts.Enabled() {
		return nil, &config.Error{Field: "accounts", Reason: "set accounts.ids or accounts.organization: true"}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Accounts{cfg: cfg, opts: opts, log: log, units: map[string]*App{}, incidents: map[string]*accountIncident{}}
	var err error
	if m.base, err = awsConfig(ctx, cfg, opts); err != nil {
		return nil, err
	}
	m.notifier = opts.Notifier
	if m.notifier == nil {
		n, err := newNotifier(ctx, cfg, m.base, log, opts.NotifyClock, opts.NotifyResult)
		if err != nil {
			return nil, err
		}
		m.notifier, m.email = n, n
		m.closers = append(m.closers, n.Close)
	}
	if ids := cfg.Accounts.IDs; len(ids) > 0 {
		m.list = func(context.Context) ([]Account, error) {
			out := make([]Account, len(ids))
			for i, id := range ids {
				out[i] = Account{ID: id}
			}
			return out, nil
		}
	} else {
		inv := &organizations.Inventory{API: awsorg.NewFromConfig(m.base), OUs: cfg.Accounts.OUs, Exclude: cfg.Accounts.Exclude}
		self := &callerAccount{client: sts.NewFromConfig(m.base)}
		m.list = func(ctx context.Context) ([]Account, error) {
			// keyrot's own account (the management account, or a delegated
			// administrator) is the organization's too, but keyrot stores
			// nothing there: it has no member role.
			id, err := self.id(ctx)
			if err != nil {
				return nil, err
			}
			accts, err := inv.Accounts(ctx)
			return slices.DeleteFunc(accts, func(a Account) bool { return a.ID == id }), err
		}
	}
	m.pass = m.appPass
	return m, nil
}

// awsConfig is opts.AWS, or else the SDK's chain, with the config's region.
func awsConfig(ctx context.Context, cfg config.Config, opts Options) (aws.Config, error) {
	var c aws.Config
	if opts.AWS != nil {
		c = *opts.AWS
	} else {
		var err error
		if c, err = LoadAWS(ctx, cfg.Region); err != nil {
			return c, err
		}
	}
	if cfg.Region != "" {
		c.Region = cfg.Region
	}
	return c, nil
}

// List resolves the selected accounts now (the organization's membership
// changes: each pass resolves it again).
func (m *Accounts) List(ctx context.Context) ([]Account, error) {
	accts, err := m.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("app: list accounts: %w", err)
	}
	return accts, nil
}

// ReconcileAll lists the accounts and runs a pass in each, at most
// accounts.concurrency at once. The error is non-nil only when the
// accounts could not be listed.
func (m *Accounts) ReconcileAll(ctx context.Context, opts keyrot.RunOptions) (AccountsSummary, error) {
	accts, err := m.List(ctx)
	if err != nil {
		return AccountsSummary{}, err
	}
	res := make([]AccountResult, len(accts))
	g := new(errgroup.Group)
	g.SetLimit(m.cfg.Accounts.Concurrency)
	for i, a := range accts {
		g.Go(func() error {
			res[i] = m.ReconcileAccount(ctx, a, opts)
			return nil
		})
	}
	_ = g.Wait() // each account's outcome is in its result
	return AccountsSummary{Accounts: res}, nil
}

// ReconcileAccount runs one pass in one account and keeps its incident
// record: a failure is reported once per incident (email to the admin, an
// error log line, the event's metric), its end once.
func (m *Accounts) ReconcileAccount(ctx context.Context, acct Account, opts keyrot.RunOptions) AccountResult {
	start := m.now()
	sum, err := m.pass(ctx, acct, opts)
	res := AccountResult{Account: acct, Summary: sum, Err: err, Duration: m.now().Sub(start)}
	if (err != nil && ctx.Err() != nil) || opts.DryRun || len(opts.Users) > 0 {
		// Stopped, not failed: the next pass takes the account up. A dry
		// pass (status, rotate --dry-run) or one for some users (rotate
		// --user, which an account may not have) reports and tells nobody.
		return res
	}
	m.track(ctx, acct, err)
	return res
}

// track opens, continues or closes the account's incident.
func (m *Accounts) track(ctx context.Context, acct Account, err error) {
	now := m.now()
	log := m.log.With("account", acct.ID)
	m.mu.Lock()
	inc := m.incidents[acct.ID]
	var tell *keyrot.Event
	switch {
	case err == nil && inc == nil:
	case err == nil:
		delete(m.incidents, acct.ID)
		if inc.reported {
			tell = &keyrot.Event{Kind: keyrot.EventRotationRecovered, Account: acct.ID, Time: now,
				Summary: fmt.Sprintf("keyrot works in account %s again, after failing since %s.", accountLabel(acct), inc.since.UTC().Format(time.RFC3339))}
		}
	default:
		if inc == nil {
			inc = &accountIncident{since: now}
			m.incidents[acct.ID] = inc
		}
		inc.failures++
		threshold := 1
		if throttled(err) {
			threshold = accountThrottledThreshold
		}
		if !inc.reported && inc.failures >= threshold {
			inc.reported = true
			tell = &keyrot.Event{Kind: keyrot.EventRotationFailed, Account: acct.ID, Time: now,
				Summary: fmt.Sprintf("keyrot could not work in account %s, so none of its users were rotated.", accountLabel(acct)),
				Next:    "keyrot tries again every pass and emails when it works again.",
				Err:     keyrot.RedactSecrets(err.Error())}
		}
	}
	m.mu.Unlock()
	switch {
	case tell != nil && tell.Kind == keyrot.EventRotationFailed:
		log.Error("account failed", "error", err, "since", inc.since)
	case tell != nil:
		log.Info("account recovered")
	case err != nil:
		log.Warn("account still failing", "error", err, "failures", inc.failures)
	}
	if tell != nil {
		m.emit(ctx, *tell)
	}
}

// emit sends an event to the observer and the shared notifier.
func (m *Accounts) emit(ctx context.Context, e keyrot.Event) {
	if m.opts.Observe != nil {
		m.opts.Observe(e)
	}
	if err := m.notifier.Notify(ctx, e); err != nil {
		m.log.Warn("notify", "account", e.Account, "kind", e.Kind, "error", err)
	}
}

// AWS is the management account's configuration (keyrot's own).
func (m *Accounts) AWS() aws.Config { return m.base }

// Notifier is the notifier every account's events go to.
func (m *Accounts) Notifier() keyrot.Notifier { return m.notifier }

// Failing lists the accounts in an open incident (status, metrics).
func (m *Accounts) Failing() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.incidents))
	for id := range m.incidents {
		out = append(out, id)
	}
	return out
}

func (m *Accounts) now() time.Time {
	if m.opts.Clock != nil {
		return m.opts.Clock.Now()
	}
	return time.Now()
}

// appPass is a pass by the account's App: the role is assumed first, so
// that an account keyrot cannot enter fails as a whole, once, before any
// user is tried.
func (m *Accounts) appPass(ctx context.Context, acct Account, opts keyrot.RunOptions) (keyrot.Summary, error) {
	a, err := m.Unit(ctx, acct)
	if err != nil {
		return keyrot.Summary{}, err
	}
	if _, err := a.AWS.Credentials.Retrieve(ctx); err != nil {
		return keyrot.Summary{}, fmt.Errorf("app: account %s: assume role %s: %w", acct.ID, m.roleARN(acct.ID), err)
	}
	sum, err := a.Rotator.ReconcileAll(ctx, opts)
	if err != nil {
		return sum, fmt.Errorf("app: account %s: %w", acct.ID, err)
	}
	return sum, nil
}

// Unit returns the account's App, built on first use and kept, so its
// assumed-role credentials, rate limiter and incident records live on.
func (m *Accounts) Unit(ctx context.Context, acct Account) (*App, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.units[acct.ID]; ok {
		return a, nil
	}
	awsCfg := AssumeRole(m.base, m.roleARN(acct.ID), m.cfg.Accounts.ExternalID)
	opts := m.opts
	opts.AWS = &awsCfg
	opts.Logger = m.log.With("account", acct.ID)
	opts.Observe = nil // the notifier below observes, once the event names its account
	opts.Publisher = nil
	if m.PublisherFor != nil {
		opts.Publisher = m.PublisherFor(acct.ID)
	}
	observe, shared := m.opts.Observe, m.notifier
	opts.Notifier = keyrot.NotifierFunc(func(ctx context.Context, e keyrot.Event) error {
		e.Account = acct.ID
		if observe != nil {
			observe(e)
		}
		return shared.Notify(ctx, e)
	})
	a, err := New(ctx, m.cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("app: account %s: %w", acct.ID, err)
	}
	m.units[acct.ID] = a
	return a, nil
}

// callerAccount is the account of keyrot's own credentials, asked once.
type callerAccount struct {
	client *sts.Client
	mu     sync.Mutex
	known  string
}

func (c *callerAccount) id(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known == "" {
		out, err := c.client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			return "", fmt.Errorf("app: which account keyrot runs in: %w", err)
		}
		c.known = aws.ToString(out.Account)
	}
	return c.known, nil
}

// roleARN is the role assumed in an account.
func (m *Accounts) roleARN(id string) string {
	return "arn:" + partition(m.base.Region) + ":iam::" + id + ":role/" + m.cfg.Accounts.Role
}

// partition is the AWS partition of a region.
func partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	}
	return "aws"
}

// assumedRoleTTL is how long assumed-role credentials live; the cache
// renews them assumedRoleRenew before they expire.
const (
	assumedRoleTTL   = time.Hour
	assumedRoleRenew = 5 * time.Minute
)

// AssumeRole is base with credentials from sts:AssumeRole of roleARN (with
// externalID when set), cached and renewed before they expire.
func AssumeRole(base aws.Config, roleARN, externalID string) aws.Config {
	c := base.Copy()
	p := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(base), roleARN, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = "keyrot"
		o.Duration = assumedRoleTTL
		if externalID != "" {
			o.ExternalID = aws.String(externalID)
		}
	})
	c.Credentials = aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = assumedRoleRenew })
	return c
}

// throttled reports whether err is AWS throttling.
func throttled(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded":
		return true
	}
	return false
}

// accountLabel names an account for people: its id, and its name if known.
func accountLabel(a Account) string {
	if a.Name == "" {
		return a.ID
	}
	return a.ID + " (" + a.Name + ")"
}

// Flush delivers the queued notifications (a Lambda invocation's end).
func (m *Accounts) Flush(ctx context.Context) error {
	if m.email == nil {
		return nil
	}
	return m.email.Flush(ctx)
}

// Close closes every account's App, then delivers what is queued.
func (m *Accounts) Close(ctx context.Context) error {
	m.mu.Lock()
	units := m.units
	m.mu.Unlock()
	var errs []error
	for _, a := range units {
		errs = append(errs, a.Close(ctx))
	}
	for _, c := range m.closers {
		errs = append(errs, c(ctx))
	}
	return errors.Join(errs...)
}
