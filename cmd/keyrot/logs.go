package main

import (
	"flag"
	"fmt"
	"log/slog"
	"sync"

	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/logging"
)

// logOutputs are a run's log writers, one per stream, so that every
// logger of the run (engine, API, audit) writes through the same buffer;
// Run closes them, writing out what they hold, before it prints the
// command's error.
type logOutputs struct {
	mu             sync.Mutex
	stderr, stdout *logging.Writer
	// format is --log-format, over log.format; "" leaves the config's.
	format string
}

// logFormatFlag adds --log-format to a command that logs.
func (m *Main) logFormatFlag(fs *flag.FlagSet) {
	fs.Func("log-format", "json, text or console (a short line per key event, on stdout); default: text on a terminal, else json (config log.format)", func(s string) error {
		switch s {
		case "json", "text", "console":
			m.logs.format = s
			return nil
		}
		return fmt.Errorf("must be json, text or console, not %q", s)
	})
}

// logger is the log the config (or --log-format) asks for, on stderr; the
// console form is the command's output for a person, so it goes to stdout.
func (m *Main) logger(cfg config.Config) *slog.Logger {
	if m.logs.format != "" {
		cfg.Log.Format = m.logs.format
	}
	w := m.Stderr
	if cfg.Log.Format == "console" {
		w = m.Stdout
	}
	return app.NewLogger(m.logOut(w == m.Stdout), cfg.Log, isTerminal(w))
}

// logOut is the run's log writer onto stdout or stderr.
func (m *Main) logOut(stdout bool) *logging.Writer {
	m.logs.mu.Lock()
	defer m.logs.mu.Unlock()
	w, stream := &m.logs.stderr, m.Stderr
	if stdout {
		w, stream = &m.logs.stdout, m.Stdout
	}
	if *w == nil {
		*w = logging.NewWriter(stream, logging.WriterOptions{})
	}
	return *w
}

// closeLogs writes out what the run's log writers hold; records logged
// later are written through.
func (m *Main) closeLogs() {
	m.logs.mu.Lock()
	defer m.logs.mu.Unlock()
	for _, w := range []*logging.Writer{m.logs.stderr, m.logs.stdout} {
		if w != nil {
			_ = w.Close()
		}
	}
}
