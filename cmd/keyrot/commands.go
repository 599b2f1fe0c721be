package main

// keyrot's command line is Go's flag package behind the small table below,
// not a CLI library. Every command already had its flags in a FlagSet, and
// the table adds what users missed (a description, usage and examples per
// command, `keyrot help COMMAND`, exit 2 for every usage error) in about
// two hundred lines. cobra and kong (both in the module mirror) would bring
// POSIX flag parsing, which changes what existing invocations mean (`-config
// F` would be the flags c, o, n, ...), a second help format to keep in step
// with the README, and a dependency tree for features (completion, nested
// command trees) keyrot does not need.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/config"
)

// command is one entry of the command table: what `keyrot help` says about
// it, and the function that runs it. Its flags are defined by run itself
// (`keyrot help NAME` is `keyrot NAME -h`), so the help never drifts from
// what the command accepts.
type command struct {
	name     string // as typed: "rotate", "apikey new"
	summary  string // one line, for the command list
	args     string // the usage line after the name
	about    string // what it does, in a few sentences
	examples []string
	// run runs the command; nil for a group whose subcommands have entries
	// of their own ("apikey").
	run func(m *Main, ctx context.Context, args []string) error
}

// commandTable is keyrot's command table, in the order `keyrot help` lists
// them. (A function, not a variable: the commands' help looks it up.)
func commandTable() []command {
	return []command{
		{name: "dev", summary: "the whole flow on a built-in sandbox, no AWS account needed",
			args:     "[--dir D] [--users N] [--listen A] [--api-listen A] [--log-format console|text|json]",
			about:    "Starts the sandbox (a local AWS endpoint), seeds IAM users, and runs the engine and the REST API\nwith short timings, so a key's whole life passes in a few minutes. It writes keyrot.yaml and env\ninto --dir for the commands you run beside it. Stop it with Ctrl-C.",
			examples: []string{"keyrot dev", "keyrot dev --dir ~/keyrot-dev --users 50"},
			run:      (*Main).runDev},
		{name: "run", summary: "the daemon: rotate on time, serve the API",
			args:     "--config F [--no-api]",
			about:    "Runs the engine until SIGINT or SIGTERM: each user is reconciled when a step is due, and the REST\nAPI serves the current keys beside it. On a signal the step in flight finishes, the API drains\nand queued emails are delivered.",
			examples: []string{"keyrot run --config keyrot.yaml", "KEYROT_API_LISTEN=127.0.0.1:8001 keyrot run --config keyrot.yaml"},
			run:      (*Main).runDaemon},
		{name: "rotate", summary: "one reconcile pass over the managed users (what the Lambda runs)",
			args:     "--config F [--user U] [--force] [--dry-run] [-o text|json]",
			about:    "Observes every managed user (or only --user), carries out the steps that are due (create, promote,\ndeactivate, delete) and prints what it did. Exit 1 if a user failed.",
			examples: []string{"keyrot rotate --config keyrot.yaml --dry-run", "keyrot rotate --config keyrot.yaml --user ci-bot --force", "keyrot rotate --config keyrot.yaml -o json"},
			run:      (*Main).runRotate},
		{name: "status", summary: "each user's keys, what happens next and when",
			args:     "--config F [-o table|json]",
			about:    "Observes every managed user and prints the current and previous key, their ages, and the next\nstep with its time. It changes nothing. Exit 1 if a user could not be observed.",
			examples: []string{"keyrot status --config keyrot.yaml", "keyrot status --config keyrot.yaml -o json"},
			run:      (*Main).runStatus},
		{name: "report", summary: "compliance report; exit 1 if a user is out of policy",
			args:     "--config F [-o table|csv|json|markdown] [--max-age 90d] [--max-unused 45d]",
			about:    "Reports every access key of the managed users against a key-age and a last-use rule (the CIS\nbenchmark's by default). Exit 1 if a user is out of policy.",
			examples: []string{"keyrot report --config keyrot.yaml", "keyrot report --config keyrot.yaml -o csv --max-age 30d"},
			run:      (*Main).runReport},
		{name: "validate", summary: "check the config (every problem at once) and print it (no secrets)",
			args:     "--config F [--no-api]",
			about:    "Reads the config file with the environment over it, checks it as keyrot run does (with --no-api,\nas keyrot run --no-api does), and prints the effective configuration with secrets redacted. Exit 2\nif it is invalid, with every field that is wrong, why, and the key or value probably meant.",
			examples: []string{"keyrot validate --config keyrot.yaml", "KEYROT_ROTATION_ROTATE_EVERY=30d keyrot validate --config keyrot.yaml --no-api"},
			run:      (*Main).runValidate},
		{name: "config", summary: "every setting's effective value and its source (default, file, env, flag)",
			args:     "[--config F] [--set PATH=VALUE]... [--env [--all]]",
			about:    "Prints each setting's value and where it came from, secrets redacted. --set tries a value as a\nflag would. --env prints the settings not at their default as KEYROT_* variables (--all: every\none), for the Lambda's template or console. Every setting: docs/config.md.",
			examples: []string{"keyrot config --config keyrot.yaml", "keyrot config --config keyrot.yaml --env", "keyrot config --config keyrot.yaml --set rotation.rotate_every=30d"},
			run:      (*Main).runConfig},
		{name: "serve", summary: "the REST API alone, reading Secrets Manager",
			args:     "--config F",
			about:    "Serves the REST API without the engine: the current keys are read from Secrets Manager and\nrefreshed every api.refresh. API_KEY gives one full-access key.",
			examples: []string{"keyrot serve --config keyrot.yaml", "API_KEY=$(openssl rand -hex 32) keyrot serve --config keyrot.yaml"},
			run:      (*Main).runServe},
		{name: "credentials", summary: "print a user's current key, from the API or Secrets Manager",
			args:  "USER [--api URL] [--format json|env|credential_process] [--direct] [--no-cache]",
			about: "Fetches USER's current key from the keyrot API (with the API key in KEYROT_API_KEY), or with\n--direct from Secrets Manager with your own AWS credentials. --format credential_process is the\nAWS SDKs' credential_process format; its answers are cached until the key's refresh time.",
			examples: []string{"keyrot credentials ci-bot", "keyrot credentials ci-bot --direct --config keyrot.yaml",
				`credential_process = keyrot credentials ci-bot --api https://keyrot.example.com --format credential_process`},
			run: (*Main).runCredentials},
		{name: "apikey", summary: "make or replace REST API keys",
			args:     "new|rotate NAME [flags]",
			about:    "Makes an API key (new) or replaces one (rotate). Run `keyrot help apikey new` or\n`keyrot help apikey rotate` for their flags.",
			examples: []string{`keyrot apikey new ci --users "ci-*"`, "keyrot apikey rotate ci --keys-secret keyrot/api-keys"}},
		{name: "apikey new", summary: "make an API key: the hash for the config, or into the keys secret",
			args:     "NAME [--config F] [--keys-secret ID] [--lifetime 90d] [--users U,..] [--list]",
			about:    "Prints a new API key once. Without a keys secret it prints the lines to add under api.keys (only\nthe key's hash); with --keys-secret (or api.keys_secret) it adds the key to that secret, which a\nrunning keyrot rereads every api.refresh.",
			examples: []string{`keyrot apikey new ci --users "ci-*"`, "keyrot apikey new admin --list --keys-secret keyrot/api-keys"},
			run:      (*Main).runAPIKeyNew},
		{name: "apikey rotate", summary: "replace an API key; the old one works for the overlap",
			args:     "NAME [--config F] [--keys-secret ID] [--overlap 7d] [--lifetime 90d]",
			about:    "Makes a successor for the API key NAME and keeps the old key valid for --overlap, so its\nconsumers can move. The new key is printed once.",
			examples: []string{"keyrot apikey rotate ci --keys-secret keyrot/api-keys", "keyrot apikey rotate ci --config keyrot.yaml --overlap 1d"},
			run:      (*Main).runAPIKeyRotate},
		{name: "sandbox", summary: "a local AWS endpoint for tests (not for real keys)",
			args:     "[--listen 127.0.0.1:4566] [--data DIR]",
			about:    "Serves, on loopback, the part of AWS keyrot uses: IAM, STS, Secrets Manager and SES v2, with\nfault injection. Point the AWS SDKs and CLI at it with AWS_ENDPOINT_URL.",
			examples: []string{"keyrot sandbox --listen 127.0.0.1:4567 &"},
			run:      (*Main).runSandbox},
		{name: "version", summary: "the version, commit and Go toolchain of this build",
			about:    "Prints the version (set by make release, else the module version), the git commit and the Go\ntoolchain of this build.",
			examples: []string{"keyrot version"},
			run:      (*Main).runVersion},
	}
}

// lookupCommand is the table entry named name, or nil.
func lookupCommand(name string) *command {
	cmds := commandTable()
	for i := range cmds {
		if cmds[i].name == name {
			return &cmds[i]
		}
	}
	return nil
}

const exitStatusHelp = "Exit status: 0 ok, 1 some user failed (or is out of policy), 2 bad usage or config."

// printUsage prints the top-level help: every command with its one line.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "keyrot rotates AWS IAM access keys and keeps the current key in Secrets Manager.\n\nUsage:\n  keyrot COMMAND [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commandTable() {
		if c.run == nil {
			continue // a group: its subcommands are listed
		}
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s\nRun \"keyrot help COMMAND\" (or \"keyrot COMMAND -h\") for a command's description, flags and examples.\n", exitStatusHelp)
}

// printHelp prints a command's help; fs, when not nil, supplies its flags.
func printHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "keyrot %s: %s\n\nUsage:\n  keyrot %s", c.name, c.summary, c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", c.about)
	if fs != nil && hasFlags(fs) {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	if len(c.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	fmt.Fprintf(w, "\n%s\n", exitStatusHelp)
}

// printFlags lists fs's flags as they are typed in the README and the
// examples: --name (a one-letter flag keeps its single dash).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		typ, usage := flag.UnquoteUsage(f)
		line := "  " + dash + f.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && !strings.Contains(usage, "(default") {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// runHelp is `keyrot help [COMMAND [SUBCOMMAND]]`: the command's own -h.
func (m *Main) runHelp(ctx context.Context, args []string) error {
	if len(args) == 0 {
		printUsage(m.Stdout)
		return nil
	}
	name := strings.Join(args, " ")
	c := lookupCommand(name)
	if c == nil {
		return &usageError{fmt.Sprintf("no help for %q: not a command", name)}
	}
	if c.run == nil { // a group: its help, then each subcommand's
		printHelp(m.Stdout, c, nil)
		return nil
	}
	return c.run(m, ctx, []string{"-h"})
}

// usageError is bad command-line usage: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// flags returns the FlagSet of the command name (its table entry's name).
// It prints nothing itself: parse returns its errors, and prints the help
// on -h.
func (m *Main) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses a command's flags; positional arguments are a usage error.
func (m *Main) parse(fs *flag.FlagSet, args []string) error {
	if err := m.parseWithArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// parseWithArgs parses a command's flags and leaves its positional
// arguments in fs.Args(). On -h it prints the command's help to stdout and
// returns flag.ErrHelp (exit 0); a parse error is a usage error.
func (m *Main) parseWithArgs(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		if c := lookupCommand(fs.Name()); c != nil {
			printHelp(m.Stdout, c, fs)
		}
		return err
	default:
		return &usageError{err.Error()}
	}
}

// exitCode prints err, if any, as `keyrot COMMAND: message` on stderr and
// returns the exit status for it. It is the one place a command's error is
// printed.
func (m *Main) exitCode(name string, err error) int {
	var (
		ue *usageError
		ce *config.Error
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ce), errors.Is(err, keyrot.ErrUserNotManaged):
		fmt.Fprintf(m.Stderr, "keyrot %s: %s\n", name, errorText(name, err))
		if ue != nil && lookupCommand(name) != nil {
			fmt.Fprintf(m.Stderr, "Run \"keyrot help %s\" for usage.\n", name)
		}
		return exitUsage
	default:
		fmt.Fprintf(m.Stderr, "keyrot %s: %s\n", name, errorText(name, err))
		return exitFailed
	}
}

// errorText is err's message without the prefixes that would repeat the
// "keyrot COMMAND: " it is printed after: the root package's "keyrot: "
// and the command's own name.
func errorText(name string, err error) string {
	msg := err.Error()
	for {
		trimmed := msg
		for _, p := range []string{"keyrot " + name + ": ", "keyrot: ", name + ": "} {
			trimmed = strings.TrimPrefix(trimmed, p)
		}
		if trimmed == msg {
			return msg
		}
		msg = trimmed
	}
}
