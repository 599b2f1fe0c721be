package logging_test

import (
	"bytes"
	"errors"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/logging"
)

// TestJSONHandlerIsSlogs: for random records of every kind, through With,
// groups and levels, logging.JSONHandler writes exactly the bytes slog's
// JSON handler writes.
func TestJSONHandlerIsSlogs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	strs := []string{"", "plain", `quo"te`, `back\slash`, "new\nline", "tab\t", "\x00\x01\x1f\x7f", "é ü 日本", "\u2028\u2029", "bad \xff utf8", "<html>&amp;", "GET /credentials/{user}"}
	values := []func() any{
		func() any { return strs[rng.IntN(len(strs))] },
		func() any { return rng.Int64() - rng.Int64() },
		func() any { return rng.Uint64() },
		func() any { return rng.IntN(2) == 0 },
		func() any { return time.Duration(rng.Int64N(1e12)) },
		func() any { return time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(time.FixedZone("x", 3600)) },
		func() any { return 1.5 },                    // slog's
		func() any { return errors.New("an error") }, // slog's
		func() any { return []int{1, 2} },            // slog's
		func() any { return slog.GroupValue(slog.Int("n", 1)) },
	}
	kinds := len(values)
	args := func(n int) []any {
		var a []any
		for range n {
			a = append(a, strs[1+rng.IntN(len(strs)-1)], values[rng.IntN(kinds)]())
		}
		return a
	}
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError, slog.LevelInfo + 2}
	for i := range 4000 {
		kinds = len(values)
		if i%2 == 0 {
			kinds = 6 // only what JSONHandler encodes itself
		}
		var want, got bytes.Buffer
		a := slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b := slog.New(logging.NewJSONHandler(&got, slog.LevelDebug))
		withArgs := args(rng.IntN(3))
		if len(withArgs) > 0 {
			a, b = a.With(withArgs...), b.With(withArgs...)
		}
		if rng.IntN(10) == 0 {
			a, b = a.WithGroup("g"), b.WithGroup("g")
		}
		recArgs := args(rng.IntN(12))
		level, msg := levels[rng.IntN(len(levels))], strs[rng.IntN(len(strs))]
		a.Log(t.Context(), level, msg, recArgs...)
		b.Log(t.Context(), level, msg, recArgs...)
		// The times differ by when each was taken: compare the rest.
		if w, g := dropTime(want.Bytes()), dropTime(got.Bytes()); !bytes.Equal(w, g) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

// dropTime removes the leading "time" field.
func dropTime(b []byte) []byte {
	if i := bytes.Index(b, []byte(`","level"`)); bytes.HasPrefix(b, []byte(`{"time":"`)) && i > 0 {
		return append([]byte("{"), b[i+2:]...)
	}
	return b
}

// TestJSONHandlerTime: the record's time, as slog writes it.
func TestJSONHandlerTime(t *testing.T) {
	at := time.Date(2026, 12, 2, 7, 8, 9, 123456789, time.UTC)
	for _, tt := range []time.Time{at, at.Truncate(time.Second), at.In(time.FixedZone("x", -5*3600)), {}} {
		var want, got bytes.Buffer
		r := slog.NewRecord(tt, slog.LevelInfo, "m", 0)
		r.AddAttrs(slog.Time("at", tt), slog.String("k", "v"))
		_ = slog.NewJSONHandler(&want, nil).Handle(t.Context(), r)
		_ = logging.NewJSONHandler(&got, nil).Handle(t.Context(), r)
		if !bytes.Equal(want.Bytes(), got.Bytes()) {
			t.Errorf("%v:\n got %s\nwant %s", tt, got.Bytes(), want.Bytes())
		}
	}
}

// BenchmarkJSONHandler compares the audit record through slog's JSON
// handler and through logging.JSONHandler.
func BenchmarkJSONHandler(b *testing.B) {
	for _, h := range []struct {
		name string
		h    slog.Handler
	}{
		{"slog", slog.NewJSONHandler(discard{}, nil)},
		{"logging", logging.NewJSONHandler(discard{}, nil)},
	} {
		b.Run(h.name, func(b *testing.B) {
			audit := h.h.WithAttrs([]slog.Attr{slog.String("system", "audit")})
			at := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				r := slog.NewRecord(at, slog.LevelInfo, "credentials read", 0)
				r.AddAttrs(slog.String("api_key", "ci"), slog.String("user", "ci-bot"), slog.String("key_id", "AKIAIOSFODNN7EXAMPLE"),
					slog.String("remote", "192.0.2.1:4000"), slog.String("format", "json"), slog.String("outcome", "granted"),
					slog.String("method", "GET"), slog.String("route", "GET /credentials/{user}"), slog.Int("status", 200), slog.Duration("duration", 3*time.Microsecond))
				if err := audit.Handle(b.Context(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkGuard is the audit record through Guard over JSONHandler.
func BenchmarkGuard(b *testing.B) {
	audit := logging.Guard(logging.NewJSONHandler(discard{}, nil)).WithAttrs([]slog.Attr{slog.String("system", "audit")})
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		r := slog.NewRecord(at, slog.LevelInfo, "credentials read", 0)
		r.AddAttrs(slog.String("api_key", "ci"), slog.String("user", "ci-bot"), slog.String("key_id", "AKIAIOSFODNN7EXAMPLE"),
			slog.String("remote", "192.0.2.1:4000"), slog.String("format", "json"), slog.String("outcome", "granted"),
			slog.String("method", "GET"), slog.String("route", "GET /credentials/{user}"), slog.Int("status", 200), slog.Duration("duration", 3*time.Microsecond))
		if err := audit.Handle(b.Context(), r); err != nil {
			b.Fatal(err)
		}
	}
}
