// Command keyrot rotates AWS IAM user access keys, keeps the current key in
// AWS Secrets Manager, emails people about every key event and serves the
// current key to pipelines. Run `keyrot help` for the commands.
package main

import (
	"context"
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

// Run runs one command and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		printUsage(m.Stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "--version":
		name = "version"
	case "help", "-h", "-help", "--help":
		return m.exitCode("help", m.runHelp(ctx, rest))
	}
	c := lookupCommand(name)
	if c != nil && c.run == nil { // a group: the subcommand names the entry
		if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help" {
			if len(rest) == 0 {
				printHelp(m.Stderr, c, nil)
				return exitUsage
			}
			printHelp(m.Stdout, c, nil)
			return exitOK
		}
		sub := lookupCommand(name + " " + rest[0])
		if sub == nil {
			return m.exitCode(name, &usageError{fmt.Sprintf("unknown subcommand %q: want %s", rest[0], c.args)})
		}
		c, name, rest = sub, sub.name, rest[1:]
	}
	if c == nil {
		fmt.Fprintf(m.Stderr, "keyrot: unknown command %q\n\n", name)
		printUsage(m.Stderr)
		return exitUsage
	}
	err := keyrot.RedactError(c.run(m, ctx, rest))
	m.closeLogs()
	return m.exitCode(name, err)
}

// failedUsers reports that some users failed in a pass.
type failedUsers struct{ n, of int }

func (e *failedUsers) Error() string { return fmt.Sprintf("%d of %d users failed", e.n, e.of) }

// loadConfig reads --config (optional) with the environment over it and
// validates it for a command that needs the given parts (config.Need):
// every command rejects the same wrong values, and asks only for the
// settings it uses.
func (m *Main) loadConfig(path string, needs ...config.Need) (config.Config, error) {
	return config.Load(path, m.Open, m.LookupEnv, needs...)
}

// envOr is the environment variable key, or def when it is unset or empty.
func (m *Main) envOr(key, def string) string {
	if v, ok := m.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
