package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// JSONHandler writes what slog.JSONHandler writes, byte for byte, faster
// for the records keyrot writes most, the API's access and audit records:
// With's attributes are rendered once, and a record whose attributes are
// all strings, integers, booleans, durations or times is encoded here from
// a pooled buffer, with one Write and no allocation. Anything else (a
// group, an error, any other value) is handed to a slog.JSONHandler that
// has the same attributes.
//
// w must be safe for concurrent use and take a record per Write: a Writer.
type JSONHandler struct {
	w      io.Writer
	level  slog.Leveler
	prefix []byte       // With's attributes, rendered: `,"key":value` each
	fast   bool         // no group is open and prefix holds every With attribute
	slow   slog.Handler // slog's, with the same attributes and groups
}

var _ slog.Handler = (*JSONHandler)(nil)

// NewJSONHandler returns a JSON handler onto w for records at level and above.
func NewJSONHandler(w io.Writer, level slog.Leveler) *JSONHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &JSONHandler{w: w, level: level, fast: true, slow: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})}
}

// Enabled reports whether records at level are written.
func (h *JSONHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *JSONHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.slow = h.slow.WithAttrs(attrs)
	if !h.fast {
		return &c
	}
	prefix := append([]byte{}, h.prefix...)
	for _, a := range attrs {
		var ok bool
		if prefix, ok = appendAttr(prefix, a); !ok {
			c.fast, c.prefix = false, nil
			return &c
		}
	}
	c.prefix = prefix
	return &c
}

// WithGroup returns a handler that puts later attributes in group name
// (through slog's handler).
func (h *JSONHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.fast, c.prefix, c.slow = false, nil, h.slow.WithGroup(name)
	return &c
}

var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Handle writes r as one JSON line.
func (h *JSONHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.slow.Handle(ctx, r)
	}
	bp := jsonBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			jsonBufs.Put(bp)
		}
	}()
	b := append((*bp)[:0], '{')
	if !r.Time.IsZero() {
		t := r.Time.Round(0)
		if y := t.Year(); y < 0 || y >= 10000 {
			return h.slow.Handle(ctx, r)
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, r.Message)
	b = append(b, h.prefix...)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		b, ok = appendAttr(b, a)
		return ok
	})
	if !ok {
		*bp = b
		return h.slow.Handle(ctx, r)
	}
	b = append(b, '}', '\n')
	*bp = b
	_, err := h.w.Write(b)
	return err
}

// appendAttr appends `,"key":value` for an attribute of a kind encoded
// here, or reports that a is not one.
func appendAttr(b []byte, a slog.Attr) ([]byte, bool) {
	if a.Key == "" {
		return b, false // slog drops it, or inlines a group
	}
	v := a.Value
	kind := v.Kind()
	switch kind {
	case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindBool, slog.KindDuration:
	case slog.KindTime:
		if y := v.Time().Year(); y < 0 || y >= 10000 {
			return b, false
		}
	default:
		return b, false
	}
	b = append(b, ',')
	b = appendString(b, a.Key)
	b = append(b, ':')
	switch kind {
	case slog.KindString:
		b = appendString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = strconv.AppendInt(b, int64(v.Duration()), 10) // nanoseconds, as json.Marshal
	case slog.KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return b, true
}

// appendString appends s as a JSON string, escaped as slog escapes it:
// quotes, backslashes, control characters, U+2028 and U+2029; invalid
// UTF-8 becomes U+FFFD; HTML characters are left alone.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
