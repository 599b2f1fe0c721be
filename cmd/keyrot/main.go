// Command keyrot rotates AWS IAM user access keys, keeps the current key in
// AWS Secrets Manager, emails people about every key event and serves the
// current key to pipelines. Run `keyrot help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/config"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // some user failed
	exitUsage  = 2 // bad usage or config
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, LookupEnv: os.LookupEnv, Open: openFile}
	os.Exit(m.Run(ctx, os.Args[1:]))
}

func openFile(path string) (io.ReadCloser, error) { return os.Open(path) }

// Main is the program, with its outside world injected so tests run it whole.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	LookupEnv      func(string) (string, bool)
	Open           func(string) (io.ReadCloser, error)
	// Ready, if set, is called by long-running commands once they serve
	// (tests use it to learn the bound addresses).
	Ready func(addrs map[string]string)
	// Clock, if set, is the clock of the engine, the API and the apikey
	// command instead of the wall clock (tests drive it, with a sandbox on
	// the same clock).
	Clock keyrot.Clock

	logs logOutputs // the run's log writers (logs.go)
}

// clock is m.Clock, or the wall clock.
func (m *Main) clock() keyrot.Clock {
	if m.Clock != nil {
		return m.Clock
	}
	return keyrot.SystemClock{}
}

// usageError is bad command-line usage: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

const usage = `keyrot rotates AWS IAM access keys and keeps the current key in Secrets Manager.

Usage:
  keyrot dev          [flags]                 the whole flow on a built-in sandbox, no AWS account needed
  keyrot run          --config F              the daemon: rotate on time, serve the API
  keyrot rotate       --config F [--user U] [--force] [--dry-run]
                                              one reconcile pass (what the Lambda runs)
  keyrot status       --config F [-o table|json]
  keyrot report       --config F [-o table|csv|json|markdown] [--max-age 90d] [--max-unused 45d]
                                              compliance report; exit 1 if a user is out of policy
  keyrot validate     --config F              check the config and print it (no secrets)
  keyrot serve        --config F              the REST API alone, reading Secrets Manager
  keyrot credentials  USER [--api URL] [--format json|env|credential_process] [--direct] [--no-cache]
  keyrot apikey new   NAME [--keys-secret ID] [--lifetime 90d] [--users U,..] [--list]
                                              make an API key: the hash for the config, or into the keys secret
  keyrot apikey rotate NAME [--keys-secret ID] [--overlap 7d]
                                              replace an API key; the old one works for the overlap
  keyrot sandbox      [--listen 127.0.0.1:4566] [--data DIR]
                                              a local AWS endpoint for tests (not for real keys)
  keyrot version                              the version, commit and Go toolchain of this build

Exit status: 0 ok, 1 some user failed, 2 bad usage or config.
Run "keyrot COMMAND -h" for a command's flags.
`

// Run runs one command and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return exitUsage
	}
	commands := map[string]func(context.Context, []string) error{
		"run":         m.runDaemon,
		"rotate":      m.runRotate,
		"status":      m.runStatus,
		"report":      m.runReport,
		"validate":    m.runValidate,
		"dev":         m.runDev,
		"sandbox":     m.runSandbox,
		"serve":       m.runServe,
		"credentials": m.runCredentials,
		"apikey":      m.runAPIKey,
		"version":     m.runVersion,
	}
	name := args[0]
	if name == "--version" {
		name = "version"
	}
	if name == "help" || name == "-h" || name == "--help" {
		fmt.Fprint(m.Stdout, usage)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(m.Stderr, "keyrot: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	err := keyrot.RedactError(cmd(ctx, args[1:]))
	m.closeLogs()
	var (
		ue      *usageError
		ce      *config.Error
		failure *failedUsers
	)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ce):
		fmt.Fprintf(m.Stderr, "keyrot %s: %v\n", name, err)
		return exitUsage
	case errors.As(err, &failure):
		fmt.Fprintf(m.Stderr, "keyrot %s: %v\n", name, err)
		return exitFailed
	default:
		fmt.Fprintf(m.Stderr, "keyrot %s: %v\n", name, err)
		return exitFailed
	}
}

// failedUsers reports that some users failed in a pass.
type failedUsers struct{ n, of int }

func (e *failedUsers) Error() string { return fmt.Sprintf("%d of %d users failed", e.n, e.of) }

// flags returns a FlagSet that reports errors instead of exiting.
func (m *Main) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("keyrot "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	return fs
}

// parse parses flags, turning a parse error into a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}

// loadConfig reads --config (optional) with the environment over it.
func (m *Main) loadConfig(path string) (config.Config, error) {
	return config.Load(path, m.Open, m.LookupEnv)
}

// envOr is the environment variable key, or def when it is unset or empty.
func (m *Main) envOr(key, def string) string {
	if v, ok := m.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
