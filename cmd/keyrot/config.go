package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/keyrot/keyrot/internal/config"
)

// runConfig prints the effective configuration: every setting's value and
// where it came from (default, file, env, flag: --set), secrets redacted; with
// --env, the settings not at their default as environment variables, for
// the Lambda's template or console.
func (m *Main) runConfig(_ context.Context, args []string) error {
	fs := m.flags("config")
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	asEnv := fs.Bool("env", false, "print the settings not at their default as KEYROT_* environment variables")
	all := fs.Bool("all", false, "with --env, print every setting, defaults too")
	var sets []string
	fs.Func("set", "PATH=VALUE: set a setting over the file and the environment, as a flag does (repeatable)", func(s string) error {
		sets = append(sets, s)
		return nil
	})
	if err := m.parse(fs, args); err != nil {
		return err
	}
	cfg, src, err := config.Read(*path, m.Open, m.LookupEnv)
	if err != nil {
		return err
	}
	for _, s := range sets {
		p, v, ok := strings.Cut(s, "=")
		if !ok {
			return &usageError{fmt.Sprintf("--set %q: want PATH=VALUE, e.g. --set rotation.rotate_every=90d", s)}
		}
		if err := cfg.Set(src, p, v, "--set"); err != nil {
			return err
		}
	}
	if *asEnv {
		printEnv(m.Stdout, cfg, src, *all)
	} else {
		printSettings(m.Stdout, cfg, src, *path)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(m.Stderr, "keyrot config: warning: %s\n", w)
	}
	// Wrong values are reported as by every other command.
	return cfg.Validate()
}

// printSettings writes one line per setting: path, value, source.
func printSettings(w io.Writer, cfg config.Config, src config.Sources, path string) {
	fmt.Fprintf(w, "# effective configuration: defaults, then %s, then the environment\n", orDefault(path, "no file"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SETTING\tVALUE\tSOURCE")
	for _, s := range config.Settings() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Path, dash(shownValue(s, cfg)), src.Of(s.Path))
	}
	tw.Flush()
}

// printEnv writes the settings as environment variables, in their derived
// names, shell-quoted; secrets are named, never printed.
func printEnv(w io.Writer, cfg config.Config, src config.Sources, all bool) {
	for _, s := range config.Settings() {
		if !all && !src.Set(s.Path) {
			continue
		}
		if s.Secret {
			if src.Set(s.Path) {
				fmt.Fprintf(w, "# %s is set (a secret: not printed)\n", s.Env[0])
			}
			continue
		}
		fmt.Fprintf(w, "%s=%s\n", s.Env[0], shellQuote(s.Format(cfg)))
	}
}

// shownValue is the setting's value for people: secrets as "<set>".
func shownValue(s config.Setting, cfg config.Config) string {
	return s.Format(cfg.Redacted())
}
