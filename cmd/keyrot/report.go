package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

// outOfPolicy reports that a report found users out of policy: exit 1.
type outOfPolicy struct{ n, of int }

func (e *outOfPolicy) Error() string {
	return fmt.Sprintf("%d of %d users out of policy", e.n, e.of)
}

// durationFlag is a flag taking keyrot's durations ("90d", "36h").
func durationFlag(fs *flag.FlagSet, name string, value time.Duration, usage string) *time.Duration {
	d := value
	fs.Func(name, fmt.Sprintf("%s (default %s)", usage, keyrot.FormatDuration(value)), func(s string) error {
		v, err := keyrot.ParseDuration(s)
		if err != nil {
			return err
		}
		d = v
		return nil
	})
	return &d
}

func (m *Main) runReport(ctx context.Context, args []string) error {
	fs := m.flags("report")
	m.logFormatFlag(fs)
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	output := fs.String("o", fleet.FormatTable, "output: "+strings.Join(fleet.Formats, ", "))
	defaults := fleet.DefaultRules()
	maxAge := durationFlag(fs, "max-age", defaults.MaxKeyAge, "an active key older than this is out of policy (CIS: 90d)")
	maxUnused := durationFlag(fs, "max-unused", defaults.MaxUnused, "an active key unused this long is out of policy (CIS: 45d)")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if !slices.Contains(fleet.Formats, *output) {
		return &usageError{"-o must be one of " + strings.Join(fleet.Formats, ", ")}
	}
	rules := fleet.Rules{MaxKeyAge: *maxAge, MaxUnused: *maxUnused}
	if err := rules.Validate(); err != nil {
		return &usageError{err.Error()}
	}
	cfg, err := m.loadConfig(*path, config.NeedUsers)
	if err != nil {
		return err
	}
	if cfg.Accounts.Enabled() {
		return &config.Error{Field: "accounts", Reason: "keyrot report views one account: run it per account, with that account's credentials and without accounts (keyrot status covers every account)"}
	}
	log := m.logger(cfg)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Clock: m.clock(), Notifier: app.NoNotify})
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	snap, err := app.Observer(a, m.clock()).Snapshot(ctx)
	if err != nil {
		return err
	}
	rep := fleet.NewReport(snap, rules)
	if err := rep.Write(m.Stdout, *output); err != nil {
		return err
	}
	if *output == fleet.FormatCSV || *output == fleet.FormatJSON {
		fmt.Fprintln(m.Stderr, rep.SummaryLine()) // the tables carry it; keep machine output clean
	}
	if rep.Summary.OutOfPolicy > 0 {
		return &outOfPolicy{rep.Summary.OutOfPolicy, rep.Summary.Users}
	}
	return nil
}
