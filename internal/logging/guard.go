package logging

import (
	"context"
	"log/slog"
	"slices"

	"github.com/keyrot/keyrot"
)

// Guard wraps h so that no record it writes has a key twice in the same
// group, or an error with a secret in its text:
//
//   - An attribute replaces one of the same key added before it, by
//     Logger.With or earlier in the record (the later, nearer to the code
//     that logs, wins). slog's handlers write every attribute they are
//     given, so `log.With("system", "lambda")` handed to a component that
//     adds its own "system" would otherwise give a JSON object with a key
//     twice.
//   - An error value, or a string under the key "error" or "err", is
//     written as its text through keyrot.RedactSecrets: error text comes
//     from AWS and the network.
//
// Attributes added by With are still rendered once, by h's WithAttrs; a
// record whose keys are all new and that carries no error, the usual case
// (an audit record), is handed to that rendered handler as it is.
func Guard(h slog.Handler) slog.Handler {
	if u, ok := h.(*guardHandler); ok {
		return u
	}
	return &guardHandler{base: h, rendered: h}
}

type guardHandler struct {
	// base is the wrapped handler with everything before the innermost
	// open group; attrs are those added since, each key once; rendered is
	// base with attrs.
	base     slog.Handler
	attrs    []slog.Attr
	keys     uint64 // the keyBits of attrs
	rendered slog.Handler
}

func (h *guardHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.rendered.Enabled(ctx, level)
}

func (h *guardHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	merged := replaceKeys(append([]slog.Attr{}, h.attrs...), redactErrors(attrs))
	var keys uint64
	for _, a := range merged {
		if a.Key != "" {
			keys |= keyBit(a.Key)
		}
	}
	return &guardHandler{base: h.base, attrs: merged, keys: keys, rendered: h.base.WithAttrs(merged)}
}

func (h *guardHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	g := h.rendered.WithGroup(name)
	return &guardHandler{base: g, rendered: g}
}

func (h *guardHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.needsRewrite(r) {
		return h.rendered.Handle(ctx, r)
	}
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		own = replaceKeys(own, redactErrors([]slog.Attr{a}))
		return true
	})
	var kept []slog.Attr
	for _, a := range h.attrs {
		if a.Key == "" || indexOf(own, a.Key) < 0 {
			kept = append(kept, a)
		}
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(own...)
	return h.base.WithAttrs(kept).Handle(ctx, nr)
}

// needsRewrite reports whether r carries an error, or a key that With
// added or r has already. It runs for every record, so it compares keys
// only when their fingerprints (a bit of 64) collide.
func (h *guardHandler) needsRewrite(r slog.Record) bool {
	if r.NumAttrs() > 16 {
		return true // more keys than the check keeps: the slow path decides
	}
	var seen [16]string
	n, rewrite, mask := 0, false, h.keys
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "" {
			return true
		}
		switch a.Value.Kind() {
		case slog.KindAny, slog.KindString:
			if isError(a) {
				rewrite = true
				return false
			}
		}
		if bit := keyBit(a.Key); mask&bit == 0 {
			mask |= bit
		} else if indexOf(h.attrs, a.Key) >= 0 || slices.Contains(seen[:n], a.Key) {
			rewrite = true
			return false
		}
		seen[n] = a.Key
		n++
		return true
	})
	return rewrite
}

// keyBit is key's fingerprint, one bit of 64.
func keyBit(key string) uint64 {
	return 1 << ((uint(len(key))*7 + uint(key[0]) + uint(key[len(key)-1])*3) & 63)
}

// replaceKeys appends add to attrs, each replacing an attribute of the
// same key. Attributes without a key (inlined groups) are kept as they are.
func replaceKeys(attrs, add []slog.Attr) []slog.Attr {
	for _, a := range add {
		if i := indexOf(attrs, a.Key); a.Key != "" && i >= 0 {
			attrs = append(attrs[:i], attrs[i+1:]...)
		}
		attrs = append(attrs, a)
	}
	return attrs
}

func indexOf(attrs []slog.Attr, key string) int {
	for i, a := range attrs {
		if a.Key == key {
			return i
		}
	}
	return -1
}

// isError reports whether a holds error text.
func isError(a slog.Attr) bool {
	switch a.Value.Kind() {
	case slog.KindAny:
		_, ok := a.Value.Any().(error)
		return ok
	case slog.KindString:
		return a.Key == "error" || a.Key == "err"
	}
	return false
}

// redactErrors returns attrs with the error text in them redacted.
func redactErrors(attrs []slog.Attr) []slog.Attr {
	out, copied := attrs, false
	for i, a := range attrs {
		if !isError(a) {
			continue
		}
		if !copied {
			out, copied = append([]slog.Attr{}, attrs...), true
		}
		var text string
		if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
			text = err.Error()
		} else {
			text = a.Value.String()
		}
		out[i] = slog.String(a.Key, keyrot.RedactSecrets(text))
	}
	return out
}
