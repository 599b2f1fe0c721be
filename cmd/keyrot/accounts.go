package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

// accountReport is one account's pass as `keyrot rotate -o json` prints it
// when keyrot works across accounts.
type accountReport struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
	Error   string `json:"error,omitempty"`
	fleet.PassReport
}

// failedAccounts reports that accounts, or users in them, failed in a pass.
type failedAccounts struct{ accounts, users, of int }

func (e *failedAccounts) Error() string {
	return fmt.Sprintf("%d account(s) could not be worked in; %d of %d users failed in the others", e.accounts, e.users, e.of)
}

// rotateAccounts is `keyrot rotate` across the accounts the config selects:
// one pass in each, the accounts' outcomes one after the other.
func (m *Main) rotateAccounts(ctx context.Context, cfg config.Config, o app.Options, user string, force bool, output string) error {
	log := o.Logger
	a, err := app.NewAccounts(ctx, cfg, o)
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	opts := keyrot.RunOptions{Force: force, DryRun: cfg.Rotation.DryRun}
	if user != "" {
		opts.Users = []string{user}
	}
	sum, err := a.ReconcileAll(ctx, opts)
	if err != nil {
		return err
	}
	if output == "json" {
		out := make([]accountReport, 0, len(sum.Accounts))
		for _, r := range sum.Accounts {
			ar := accountReport{Account: r.Account.ID, Name: r.Account.Name, PassReport: fleet.NewPassReport(r.Summary, opts.DryRun, r.Duration, ctx.Err() != nil)}
			if r.Err != nil {
				ar.Error = r.Err.Error()
			}
			out = append(out, ar)
		}
		if err := writeJSON(m.Stdout, out); err != nil {
			return err
		}
	} else {
		for _, r := range sum.Accounts {
			fmt.Fprintf(m.Stdout, "account %s%s:\n", r.Account.ID, nameSuffix(r.Account.Name))
			if r.Err != nil {
				fmt.Fprintf(m.Stdout, "  FAILED: %s\n", r.Err)
				continue
			}
			printPass(&indented{m.Stdout}, fleet.NewPassReport(r.Summary, opts.DryRun, r.Duration, ctx.Err() != nil))
		}
	}
	if accounts, users, of := sum.Failed(); accounts > 0 || users > 0 {
		return &failedAccounts{accounts, users, of}
	}
	return nil
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " (" + name + ")"
}

// Unwrap makes the failure exit with the failed-pass status, as failedUsers does.
func (e *failedAccounts) Unwrap() error { return &failedUsers{e.users + e.accounts, e.of} }

// indented writes what it is given with every line indented by two spaces.
type indented struct{ w io.Writer }

func (in *indented) Write(p []byte) (int, error) {
	lines := bytes.SplitAfter(p, []byte("\n"))
	var out []byte
	for _, l := range lines {
		if len(l) > 0 {
			out = append(append(out, "  "...), l...)
		}
	}
	if _, err := in.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// daemonAccounts is the daemon across accounts: a pass over every account
// each rotation.resync (at most accounts.concurrency at once), and the API
// serving every account's keys from a cache per account.
func (m *Main) daemonAccounts(ctx context.Context, cfg config.Config, o daemonOptions) error {
	return m.serveAccounts(ctx, cfg, o, true)
}

// serveAccounts is the daemon across accounts, or with passes false `keyrot
// serve` across accounts: the API alone, its accounts listed again every
// rotation.resync.
func (m *Main) serveAccounts(ctx context.Context, cfg config.Config, o daemonOptions, passes bool) error {
	// Steps wait for the next pass: consumers are told how late one may run.
	cfg.Rotation.StepLateness = max(cfg.Rotation.StepLateness, cfg.Rotation.Resync)
	log := m.logger(cfg)
	// Each account's cache is made with its engine, filled from that
	// account's secrets and refreshed like the single account's.
	caches := keyrothttp.NewAccountCaches()
	api, err := m.newAPI(cfg, log, app.APIOptions{Serve: !o.NoAPI, Listener: o.APIListener, NoUI: true,
		ServerOptions: []keyrothttp.ServerOption{keyrothttp.WithAccounts(caches)}})
	if err != nil {
		return err
	}
	defer closeApp(ctx, api, log)
	clock := m.clock()
	accts, err := app.NewAccounts(ctx, cfg, api.EngineOptions(app.Options{Logger: log, AWS: o.AWS, Clock: clock, LookupEnv: m.LookupEnv}))
	if err != nil {
		return err
	}
	defer closeApp(ctx, accts, log)

	refreshCtx, stopRefresh := context.WithCancel(context.WithoutCancel(ctx))
	var refreshing sync.WaitGroup
	defer func() { stopRefresh(); refreshing.Wait() }()
	poll, _ := cfg.APIPoll()
	accts.PublisherFor = func(id string) keyrot.CredentialsPublisher {
		c := keyrothttp.NewCache(accountStore{accts, id}, cfg.Policy(),
			keyrothttp.WithCacheLogger(log.With("system", "cache", "account", id)), keyrothttp.WithCacheClock(clock))
		caches.Add(id, c)
		if api.Serving() {
			refreshing.Go(func() { _ = c.Run(refreshCtx, poll) })
		}
		return c
	}
	if err := api.Metrics().WatchAccounts(accts.Failing); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if !passes {
		// serve: each account's keys are loaded before the API says it is ready.
		list, err := openAccounts(ctx, accts)
		if err != nil {
			log.Error("accounts not listed", "error", err)
		}
		for _, a := range list {
			if c, ok := caches.Cache(a.ID); ok {
				if err := c.Load(ctx); err != nil {
					log.Warn("initial credentials load failed; retrying in the background", "account", a.ID, "error", err)
				}
			}
		}
	}
	// The management account's store holds only api.keys_secret, if set.
	store := app.NewStore(accts.AWS(), cfg.Secrets.Prefix, cfg.Secrets.KMSKeyID)
	if err := m.openAPI(ctx, api, app.APIDeps{Store: store, Notifier: accts.Notifier()}, o); err != nil {
		return err
	}
	resync := time.Duration(cfg.Rotation.Resync)
	log.Info("keyrot running across accounts", "role", cfg.Accounts.Role, "organization", cfg.Accounts.Organization,
		"ids", cfg.Accounts.IDs, "concurrency", cfg.Accounts.Concurrency, "resync", resync.String())
	for {
		if passes {
			sum, err := accts.ReconcileAll(ctx, keyrot.RunOptions{})
			switch {
			case err != nil:
				log.Error("accounts not listed", "error", err)
			default:
				failedAccounts, failedUsers, users := sum.Failed()
				log.Debug("pass done", "accounts", len(sum.Accounts), "failed_accounts", failedAccounts, "users", users, "failed_users", failedUsers)
			}
		} else if _, err := openAccounts(ctx, accts); err != nil {
			log.Error("accounts not listed", "error", err)
		}
		select {
		case <-ctx.Done():
			log.Info("keyrot stopping")
			return nil
		case <-clock.After(resync):
		}
	}
}

// openAccounts builds the engine of each listed account, which gives it
// its API cache (serve runs no passes that would).
func openAccounts(ctx context.Context, accts *app.Accounts) ([]app.Account, error) {
	list, err := accts.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range list {
		if _, err := accts.Unit(ctx, a); err != nil {
			return nil, err
		}
	}
	return list, nil
}

// openAPI opens the daemon's API (it serves unless --no-api) and tells the
// callers its addresses.
func (m *Main) openAPI(ctx context.Context, api *app.API, d app.APIDeps, o daemonOptions) error {
	addrs, err := api.Open(ctx, d)
	if err != nil {
		return err
	}
	if o.Ready != nil {
		o.Ready(addrs)
	}
	if m.Ready != nil {
		m.Ready(addrs)
	}
	return nil
}

// accountStore is one account's secrets, for its API cache: the store of
// the account's engine (built on first use, with its assumed role).
type accountStore struct {
	accts *app.Accounts
	id    string
}

// Pointers lists the account's current-key pointers.
func (s accountStore) Pointers(ctx context.Context) ([]keyrot.KeyPointer, error) {
	u, err := s.accts.Unit(ctx, app.Account{ID: s.id})
	if err != nil {
		return nil, err
	}
	return u.Store.Pointers(ctx)
}

// ReadCurrent reads the keys the pointers name in the account.
func (s accountStore) ReadCurrent(ctx context.Context, ptrs []keyrot.KeyPointer) ([]keyrot.Credentials, map[string]error) {
	u, err := s.accts.Unit(ctx, app.Account{ID: s.id})
	if err != nil {
		failed := make(map[string]error, len(ptrs))
		for _, p := range ptrs {
			failed[p.UserName] = err
		}
		return nil, failed
	}
	return u.Store.ReadCurrent(ctx, ptrs)
}

// accountStatusRow is one user of one account in `keyrot status`.
type accountStatusRow struct {
	Account string `json:"account"`
	statusRow
}

// statusAccounts is `keyrot status` across accounts: a dry pass in each,
// every user's row with its account, and one row for each account keyrot
// cannot work in.
func (m *Main) statusAccounts(ctx context.Context, cfg config.Config, output string) error {
	log := m.logger(cfg)
	a, err := app.NewAccounts(ctx, cfg, app.Options{Logger: log, Clock: m.clock(), Notifier: app.NoNotify})
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	sum, err := a.ReconcileAll(ctx, keyrot.RunOptions{DryRun: true})
	if err != nil {
		return err
	}
	var rows []accountStatusRow
	for _, r := range sum.Accounts {
		if r.Err != nil {
			rows = append(rows, accountStatusRow{Account: r.Account.ID, statusRow: statusRow{Error: r.Err.Error()}})
			continue
		}
		for _, row := range statusRows(r.Summary, m.clock().Now()) {
			rows = append(rows, accountStatusRow{Account: r.Account.ID, statusRow: row})
		}
	}
	if output == "json" {
		return writeJSON(m.Stdout, rows)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCOUNT\tUSER\tCURRENT KEY\tAGE\tNEXT\tAT\tNOTES")
	for _, r := range rows {
		notes := strings.Join(r.Warnings, ",")
		if r.Exempt != "" {
			notes = "exempt: " + r.Exempt
		}
		if r.Error != "" {
			notes = "error: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Account, dash(r.User), dash(r.CurrentKey), dash(r.CurrentAge), dash(r.Next), dash(r.NextAt), notes)
	}
	tw.Flush()
	if accounts, users, of := sum.Failed(); accounts > 0 || users > 0 {
		return &failedAccounts{accounts, users, of}
	}
	return nil
}
