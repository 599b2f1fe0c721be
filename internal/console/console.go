// Package console renders keyrot's log for a person watching a terminal:
// one short, aligned line per key event (time, user, event, key id, what
// happens next and in how long), warnings and errors in the same columns,
// and nothing else. It is a slog.Handler, so it is one more form of the
// same logger (log.format: console, see app.NewLogger) beside text and
// JSON, which keep every record for machines.
package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
)

// Options configure a Handler.
type Options struct {
	// Level is the least level shown (default info). Records below warn
	// that are not key events are shown only when Level is debug.
	Level slog.Leveler
	// Color adds ANSI colours; set it only when the output is a terminal.
	Color bool
	// UserWidth is the width of the user column (default 12); a longer
	// name widens its own line only.
	UserWidth int
	// Location is the time zone of the time column (default time.Local).
	Location *time.Location
}

// Column widths: the event labels below and an access key id.
const (
	eventWidth = len("key deactivated")
	keyIDWidth = len("AKIAIOSFODNN7EXAMPLE")
)

// ANSI colours.
const (
	reset   = "\x1b[0m"
	dim     = "\x1b[2m"
	red     = "\x1b[1;31m"
	green   = "\x1b[32m"
	yellow  = "\x1b[33m"
	magenta = "\x1b[35m"
)

// events are the labels and colours of the event kinds.
var events = map[keyrot.EventKind]struct{ label, color string }{
	keyrot.EventKeyCreated:        {"key created", green},
	keyrot.EventKeyDeactivated:    {"key deactivated", yellow},
	keyrot.EventKeyDeleted:        {"key deleted", magenta},
	keyrot.EventRotationFailed:    {"FAILED", red},
	keyrot.EventRotationRecovered: {"recovered", green},
	keyrot.EventWarning:           {"warning", yellow},
	keyrot.EventSyncFailed:        {"SYNC FAILED", red},
	keyrot.EventSyncRecovered:     {"sync recovered", green},
}

// Handler is a slog.Handler writing the console form.
type Handler struct {
	w     io.Writer
	opts  Options
	attrs []slog.Attr // from WithAttrs, keys already qualified by groups
	group string      // "a.b." prefix for keys added from now on
}

var _ slog.Handler = (*Handler)(nil)

// New returns a handler writing to w, one Write per line. w must be safe
// for concurrent use: keyrot gives it the process's logging.Writer, which
// every other handler writes through too, so lines never interleave.
func New(w io.Writer, opts Options) *Handler {
	if opts.Level == nil {
		opts.Level = slog.LevelInfo
	}
	if opts.UserWidth <= 0 {
		opts.UserWidth = 12
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	return &Handler{w: w, opts: opts}
}

// Enabled reports whether records at level are shown.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.opts.Level.Level()
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr{}, h.attrs...), h.qualify(attrs)...)
	return &c
}

// WithGroup returns a handler that qualifies later keys with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

func (h *Handler) qualify(attrs []slog.Attr) []slog.Attr {
	out := make([]slog.Attr, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, flatten(h.group, a)...)
	}
	return out
}

// flatten resolves a's value (so LogValuer types such as keyrot.Credentials
// show only what they choose to) and spreads groups into dotted keys.
func flatten(prefix string, a slog.Attr) []slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() != slog.KindGroup {
		if a.Key == "" {
			return nil
		}
		return []slog.Attr{{Key: prefix + a.Key, Value: a.Value}}
	}
	if a.Key != "" {
		prefix += a.Key + "."
	}
	var out []slog.Attr
	for _, g := range a.Value.Group() {
		out = append(out, flatten(prefix, g)...)
	}
	return out
}

// Handle writes r as one line, or nothing for records a person watching
// key events need not see (informational records that are not events).
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr{}, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, h.qualify([]slog.Attr{a})...)
		return true
	})
	get := func(key string) string {
		for _, a := range attrs {
			if a.Key == key {
				return a.Value.String()
			}
		}
		return ""
	}
	kind := keyrot.EventKind(get("event"))
	isEvent := kind != "" && get("system") == "rotator"
	if !isEvent && r.Level < slog.LevelWarn && h.opts.Level.Level() > slog.LevelDebug {
		return nil
	}

	var b strings.Builder
	h.paint(&b, dim, r.Time.In(h.opts.Location).Format("15:04:05"))
	b.WriteString("  ")
	fmt.Fprintf(&b, "%-*s  ", h.opts.UserWidth, orDash(get("user")))
	label, color := levelLabel(r.Level)
	if e, ok := events[kind]; isEvent && ok {
		label, color = e.label, e.color
	} else if isEvent {
		label = string(kind)
	}
	h.paint(&b, color, fmt.Sprintf("%-*s", eventWidth, label))
	fmt.Fprintf(&b, "  %-*s  ", keyIDWidth, orDash(get("key_id")))

	if isEvent {
		b.WriteString(eventTail(kind, r, get))
	} else {
		b.WriteString(r.Message)
		for _, a := range attrs {
			switch a.Key {
			case "system", "user", "key_id", "summary":
				continue
			}
			fmt.Fprintf(&b, " %s=%s", a.Key, quote(a.Value.String()))
		}
	}
	_, err := io.WriteString(h.w, strings.TrimRight(b.String(), " ")+"\n")
	return err
}

// eventTail is what an event line says after the key id: what happens
// next and in how long, or the warning or failure.
func eventTail(kind keyrot.EventKind, r slog.Record, get func(string) string) string {
	summary := get("summary") // the sentence; the message is the kind
	if summary == "" {
		summary = r.Message
	}
	switch kind {
	case keyrot.EventRotationFailed, keyrot.EventSyncFailed:
		return summary + ": " + get("error")
	case keyrot.EventWarning, keyrot.EventRotationRecovered, keyrot.EventSyncRecovered:
		return summary
	}
	next, at := get("next"), get("next_at")
	if next == "" {
		return ""
	}
	when, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return next
	}
	// next_at has whole seconds: so does the "now" it is compared with.
	if d := when.Sub(r.Time.Truncate(time.Second)); d > 0 {
		return next + " in " + keyrot.FormatDuration(d)
	}
	return next + " now"
}

func levelLabel(l slog.Level) (label, color string) {
	switch {
	case l >= slog.LevelError:
		return "error", red
	case l >= slog.LevelWarn:
		return "warning", yellow
	case l >= slog.LevelInfo:
		return "info", ""
	}
	return "debug", dim
}

func (h *Handler) paint(b *strings.Builder, color, s string) {
	if !h.opts.Color || color == "" {
		b.WriteString(s)
		return
	}
	b.WriteString(color + s + reset)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// quote quotes values with spaces, as the text handler does.
func quote(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
