package main

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

// accountReport is one account's pass as `keyrot rotate -o json` prints it
// when keyrot works across accounts.
type accountReport struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
	Error   string `json:"error,omitempty"`
	report
}

// failedAccounts reports that accounts, or users in them, failed in a pass.
type failedAccounts struct{ accounts, users, of int }

func (e *failedAccounts) Error() string {
	return fmt.Sprintf("%d account(s) could not be worked in; %d of %d users failed in the others", e.accounts, e.users, e.of)
}

// rotateAccounts is `keyrot rotate` across the accounts the config selects:
// one pass in each, the accounts' outcomes one after the other.
func (m *Main) rotateAccounts(ctx context.Context, cfg config.Config, user string, force bool, output string) error {
	log := m.logger(cfg)
	a, err := app.NewAccounts(ctx, cfg, app.Options{Logger: log, Clock: m.clock()})
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
			ar := accountReport{Account: r.Account.ID, Name: r.Account.Name, report: passReport(r.Summary, opts.DryRun)}
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
			printPass(&indented{m.Stdout}, r.Summary, opts.DryRun)
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
