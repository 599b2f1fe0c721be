package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

// isTerminal reports whether w is a character device (a person is watching).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// closeApp flushes the app (queued notifications), or a notifier alone,
// with a bounded wait, even when ctx is already cancelled by a signal.
func closeApp(ctx context.Context, a interface{ Close(context.Context) error }, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := a.Close(cctx); err != nil {
		log.Error("close", "error", err)
	}
}

func (m *Main) runRotate(ctx context.Context, args []string) error {
	fs := m.flags("rotate")
	m.logFormatFlag(fs)
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	user := fs.String("user", "", "only this user")
	force := fs.Bool("force", false, "rotate now, whatever the key's age")
	dryRun := fs.Bool("dry-run", false, "print the plan and change nothing")
	output := fs.String("o", "text", "output: text or json")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if *output != "text" && *output != "json" {
		return &usageError{"-o must be text or json"}
	}
	// A dry run sends no email, so it needs no mail settings.
	cfg, err := m.loadConfig(*path, config.NeedUsers)
	if err != nil {
		return err
	}
	cfg.Rotation.DryRun = cfg.Rotation.DryRun || *dryRun
	opts := app.Options{Logger: m.logger(cfg), Clock: m.clock(), Notifier: app.NoNotify}
	if !cfg.Rotation.DryRun {
		if err := cfg.Validate(config.NeedUsers, config.NeedMail); err != nil {
			return err
		}
		opts.Notifier = nil // the one the config describes
		opts.LookupEnv = m.LookupEnv
	}
	if cfg.Accounts.Enabled() {
		return m.rotateAccounts(ctx, cfg, opts, *user, *force, *output)
	}
	log := opts.Logger
	a, err := app.New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	run := keyrot.RunOptions{Force: *force, DryRun: cfg.Rotation.DryRun}
	if *user != "" {
		run.Users = []string{*user}
	}
	start := m.clock().Now()
	sum, err := a.Rotator.ReconcileAll(ctx, run)
	if err != nil {
		return err
	}
	rep := fleet.NewPassReport(sum, run.DryRun, m.clock().Now().Sub(start), ctx.Err() != nil)
	if *output == "json" {
		if err := writeJSON(m.Stdout, rep); err != nil {
			return err
		}
	} else {
		printPass(m.Stdout, rep)
	}
	if sum.Failed > 0 {
		return &failedUsers{sum.Failed, sum.Users}
	}
	return nil
}

func (m *Main) runStatus(ctx context.Context, args []string) error {
	fs := m.flags("status")
	m.logFormatFlag(fs)
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	output := fs.String("o", "table", "output: table or json")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return &usageError{"-o must be table or json"}
	}
	// status plans and sends nothing: it needs no mail settings.
	cfg, err := m.loadConfig(*path, config.NeedUsers)
	if err != nil {
		return err
	}
	if cfg.Accounts.Enabled() {
		return m.statusAccounts(ctx, cfg, *output)
	}
	log := m.logger(cfg)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Clock: m.clock(), Notifier: app.NoNotify})
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	sum, err := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{DryRun: true})
	if err != nil {
		return err
	}
	rows := statusRows(sum, m.clock().Now())
	if *output == "json" {
		return writeJSON(m.Stdout, rows)
	}
	printStatus(m.Stdout, rows)
	if sum.Failed > 0 {
		return &failedUsers{sum.Failed, sum.Users}
	}
	return nil
}

func (m *Main) runValidate(_ context.Context, args []string) error {
	fs := m.flags("validate")
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	noAPI := fs.Bool("no-api", false, "check for keyrot run --no-api: no API keys needed")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	// What keyrot run needs, so that validate rejects exactly what run does.
	needs := config.Everything
	if *noAPI {
		needs = []config.Need{config.NeedUsers, config.NeedMail, config.NeedDaemon}
	}
	cfg, err := m.loadConfig(*path, needs...)
	// The secrets the config names by variable (channels, sync tokens)
	// must be set, as run needs them: reported with every other problem.
	if serr := cfg.SecretVars(m.LookupEnv); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return err
	}
	out, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		return fmt.Errorf("print config: %w", err)
	}
	fmt.Fprintf(m.Stdout, "# effective configuration (defaults, then %s, then environment)\n%s", orDefault(*path, "no file"), out)
	p := cfg.Policy()
	fmt.Fprintf(m.Stdout, "# secrets ring: %d secret(s) per user (version quota: at most %d writes per secret per day)\n",
		p.RingSize(), (int(24*time.Hour/p.RotateEvery)+p.RingSize()-1)/p.RingSize())
	if cfg.API.FullAccessKey != "" {
		fmt.Fprintln(m.Stdout, "# API_KEY is set: one full-access API key, without a lifetime (rotate it by hand)")
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(m.Stderr, "keyrot validate: warning: %s\n", w)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printPass writes the pass report for a person.
func printPass(w io.Writer, rep fleet.PassReport) {
	verb := "did"
	if rep.DryRun {
		verb = "would do"
	}
	for _, u := range rep.Results {
		switch {
		case u.Exempt != "":
			fmt.Fprintf(w, "%s: exempt (%s)\n", u.User, u.Exempt)
			continue
		case u.Error != "":
			fmt.Fprintf(w, "%s: FAILED: %s\n", u.User, u.Error)
		}
		steps := u.Done
		if rep.DryRun {
			steps = u.Planned
		}
		for _, s := range steps {
			fmt.Fprintf(w, "%s: %s %s\n", u.User, verb, s)
		}
		for _, s := range u.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", u.User, s)
		}
		if u.NextAt != "" {
			fmt.Fprintf(w, "%s: next: %s at %s\n", u.User, u.Next, u.NextAt)
		}
	}
	fmt.Fprintf(w, "%d users: %d created, %d deactivated, %d deleted, %d warnings, %d failed\n",
		rep.Users, rep.Created, rep.Deactivated, rep.Deleted, rep.Warnings, rep.Failed)
}

// statusRow is one user in `keyrot status`.
type statusRow struct {
	User           string   `json:"user"`
	Exempt         string   `json:"exempt,omitempty"`
	CurrentKey     string   `json:"current_key,omitempty"`
	CurrentAge     string   `json:"current_age,omitempty"`
	CurrentSince   string   `json:"current_since,omitempty"`
	PreviousKey    string   `json:"previous_key,omitempty"`
	PreviousStatus string   `json:"previous_status,omitempty"`
	Next           string   `json:"next,omitempty"`
	NextAt         string   `json:"next_at,omitempty"`
	Warnings       []string `json:"warnings,omitempty"`
	Error          string   `json:"error,omitempty"`
	// Targets are the sync targets carrying the user's key.
	Targets []targetRow `json:"targets,omitempty"`
}

// targetRow is a sync target's state for one user in `keyrot status`.
type targetRow struct {
	Target string `json:"target"`
	// State is confirmed (holds the current key), pending (not yet), or
	// failing (a reported incident, or this process saw the last try fail).
	State        string `json:"state"`
	KeyID        string `json:"key_id,omitempty"` // the key the target last confirmed
	FailingSince string `json:"failing_since,omitempty"`
	Error        string `json:"error,omitempty"`
	// HeldKey is the previous key kept active for the target.
	HeldKey string `json:"held_key,omitempty"`
}

func targetRows(res keyrot.UserResult) []targetRow {
	var rows []targetRow
	for _, t := range res.Targets {
		r := targetRow{Target: t.Target, State: "pending", KeyID: t.KeyID, Error: t.Err}
		switch {
		case t.Confirmed:
			r.State = "confirmed"
		case !t.FailingSince.IsZero() || t.Err != "":
			r.State = "failing"
		}
		if !t.FailingSince.IsZero() {
			r.FailingSince = t.FailingSince.UTC().Format(time.RFC3339)
		}
		for id, ret := range res.Retiring {
			if slices.Contains(ret.HeldFor, t.Target) {
				r.HeldKey = id
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func statusRows(sum keyrot.Summary, now time.Time) []statusRow {
	var rows []statusRow
	for _, res := range sum.Results {
		r := statusRow{User: res.User, Exempt: res.ExemptReason, Next: res.Next}
		if res.Missing {
			r.Error = "IAM user not found"
		}
		if res.Current != nil {
			r.CurrentKey = res.Current.ID
			r.CurrentAge = keyrot.FormatDuration(now.Sub(res.Current.CreateDate).Truncate(time.Second))
		}
		if !res.CurrentSince.IsZero() {
			r.CurrentSince = res.CurrentSince.UTC().Format(time.RFC3339)
		}
		var others []string
		var statuses []string
		for _, k := range res.Others {
			others = append(others, k.ID)
			statuses = append(statuses, string(k.Status))
		}
		r.PreviousKey, r.PreviousStatus = strings.Join(others, ","), strings.Join(statuses, ",")
		if len(res.Planned) > 0 {
			r.Next, r.NextAt = fleet.StepText(res.Planned[0]), "now"
		} else if !res.NextAt.IsZero() {
			r.NextAt = res.NextAt.UTC().Format(time.RFC3339)
		}
		for _, w := range res.Warnings {
			r.Warnings = append(r.Warnings, string(w.Warning))
		}
		if res.Err != nil {
			r.Error = res.Err.Error()
		}
		r.Targets = targetRows(res)
		rows = append(rows, r)
	}
	return rows
}

func printStatus(w io.Writer, rows []statusRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tCURRENT KEY\tAGE\tPREVIOUS KEY\tSTATUS\tNEXT\tAT\tNOTES")
	for _, r := range rows {
		notes := strings.Join(r.Warnings, ",")
		if r.Exempt != "" {
			notes = "exempt: " + r.Exempt
		}
		if r.Error != "" {
			notes = "error: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.User, dash(r.CurrentKey), dash(r.CurrentAge), dash(r.PreviousKey), dash(r.PreviousStatus), dash(r.Next), dash(r.NextAt), notes)
	}
	tw.Flush()
	printTargets(w, rows)
}

// printTargets lists each sync target's state per user, under the users.
func printTargets(w io.Writer, rows []statusRow) {
	if !slices.ContainsFunc(rows, func(r statusRow) bool { return len(r.Targets) > 0 }) {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tSYNC TARGET\tSTATE\tCONFIRMED KEY\tHOLDING\tNOTES")
	for _, r := range rows {
		for _, t := range r.Targets {
			notes := t.Error
			if t.FailingSince != "" {
				notes = strings.TrimSpace("failing since " + t.FailingSince + " " + notes)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.User, t.Target, t.State, dash(t.KeyID), dash(t.HeldKey), notes)
		}
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
