package logging_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/logging"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
)

// TestWriterKeepsRecordsWhole: records from many goroutines, of many
// sizes, some larger than the buffer, reach the underlying writer in
// whole lines only, none lost, none interleaved.
func TestWriterKeepsRecordsWhole(t *testing.T) {
	var out testkit.Buffer
	w := logging.NewWriter(&out, logging.WriterOptions{Size: 1 << 10, Every: time.Hour})
	log := slog.New(logging.Guard(slog.NewJSONHandler(w, nil)))
	var wg sync.WaitGroup
	const goroutines, each = 8, 200
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				log.Info("record", "g", g, "i", i, "pad", strings.Repeat("x", (g*each+i)%1500))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := out.PartialWrites(); n != 0 {
		t.Errorf("%d writes ended inside a record", n)
	}
	recs, err := testkit.JSONLines(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(recs), goroutines*each; got != want {
		t.Fatalf("%d records, want %d", got, want)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[fmt.Sprint(r["g"], "/", r["i"])] = true
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct records, want %d", len(seen), goroutines*each)
	}
}

// TestWriterHoldsUntilEveryOrFlush: nothing is written before the
// interval passes on the injected clock, a Flush or a Close; after Close
// records go straight through.
func TestWriterHoldsUntilEveryOrFlush(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clock := mock.NewClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	var out testkit.Buffer
	w := logging.NewWriter(&out, logging.WriterOptions{Every: time.Second, Clock: clock})
	fmt.Fprintln(w, "one")
	if err := clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "two")
	if got := out.String(); got != "" {
		t.Fatalf("written before the interval: %q", got)
	}
	clock.Advance(time.Second)
	if _, err := out.WaitFor(ctx, regexp.MustCompile(`^one\ntwo\n$`)); err != nil {
		t.Fatal(err)
	}

	fmt.Fprint(w, "three") // no newline: the writer ends the line
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "one\ntwo\nthree\n"; got != want {
		t.Fatalf("after Flush: %q, want %q", got, want)
	}
	fmt.Fprintln(w, "four")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "five")
	if got, want := out.String(), "one\ntwo\nthree\nfour\nfive\n"; got != want {
		t.Fatalf("after Close: %q, want %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestWriterThrough: a negative interval writes each record at once.
func TestWriterThrough(t *testing.T) {
	var out bytes.Buffer
	w := logging.NewWriter(&out, logging.WriterOptions{Every: -1})
	fmt.Fprintln(&out, "before")
	fmt.Fprintln(w, "record")
	if got, want := out.String(), "before\nrecord\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestWriterDropsOnError: a failed write is reported and its records
// dropped, so the buffer does not grow without bound.
func TestWriterDropsOnError(t *testing.T) {
	w := logging.NewWriter(failingWriter{}, logging.WriterOptions{Size: 16, Every: time.Hour})
	if _, err := fmt.Fprintln(w, "0123456789"); err != nil {
		t.Fatalf("buffered write: %v", err)
	}
	if _, err := fmt.Fprintln(w, "0123456789"); err == nil {
		t.Fatal("no error from the write that flushed onto a failing writer")
	}
	if _, err := fmt.Fprintln(w, "0123"); err != nil {
		t.Fatalf("buffered write after the failure: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close: no error for the record it could not write")
	}
}

// TestUniqueKeys: a key added twice, by With or in the record, is written
// once, with the later value, in JSON and in text; groups keep their own
// keys.
func TestUniqueKeys(t *testing.T) {
	for _, tt := range []struct {
		name string
		log  func(*slog.Logger)
		want string
	}{
		{"with over with", func(l *slog.Logger) { l.With("system", "lambda").With("system", "rotator").Info("m", "user", "u") },
			`"system":"rotator","user":"u"`},
		{"record over with", func(l *slog.Logger) { l.With("system", "http", "a", 1).Info("m", "system", "audit") },
			`"a":1,"system":"audit"`},
		{"twice in a record", func(l *slog.Logger) { l.Info("m", "k", 1, "j", 2, "k", 3) }, `"j":2,"k":3`},
		{"many keys", func(l *slog.Logger) {
			args := []any{}
			for i := range 20 {
				args = append(args, fmt.Sprint("k", i%18), i)
			}
			l.Info("m", args...)
		}, `"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k0":18,"k1":19`},
		{"groups", func(l *slog.Logger) { l.With("k", 1).WithGroup("g").With("k", 2).Info("m", "k", 3) }, `"k":1,"g":{"k":3}`},
		{"no repeats", func(l *slog.Logger) { l.With("system", "http").Info("m", "a", 1, "b", "x") }, `"system":"http","a":1,"b":"x"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			tt.log(slog.New(logging.Guard(slog.NewJSONHandler(&out, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			}))))
			if _, err := testkit.JSONObject(bytes.TrimSpace(out.Bytes())); err != nil {
				t.Fatalf("%s: %v", out.String(), err)
			}
			if got, want := out.String(), `{"level":"INFO","msg":"m",`+tt.want+"}\n"; got != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// TestJSONObjectRejects: the test decoder refuses what the log must never
// hold.
func TestJSONObjectRejects(t *testing.T) {
	for _, line := range []string{
		`{"a":1,"a":2}`,
		`{"a":{"b":1,"b":2}}`,
		`{"a":[{"b":1,"b":2}]}`,
		`{"a":1}{"b":2}`,
		`{"a":1`,
		`["a"]`,
		`time=now level=INFO msg=m`,
	} {
		if _, err := testkit.JSONObject([]byte(line)); err == nil {
			t.Errorf("JSONObject(%s) accepted it", line)
		}
	}
	if _, err := testkit.JSONObject([]byte(`{"a":{"b":[1,{"c":null}]},"d":"e"}`)); err != nil {
		t.Errorf("a valid object: %v", err)
	}
}

// TestGuardRedactsErrors: error values and error strings lose anything
// shaped like a secret, whether logged with the record or by With; other
// fields are left as they are (they never hold secrets, and checking them
// would cost every audit record).
func TestGuardRedactsErrors(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	var out bytes.Buffer
	log := slog.New(logging.Guard(slog.NewJSONHandler(&out, nil)))
	log.Error("failed", "error", fmt.Errorf("iam: %s rejected", secret))
	log.With("err", "token "+secret).Warn("with")
	log.Error("string", "error", secret+" "+secret)
	log.Info("key id", "key_id", "AKIAIOSFODNN7EXAMPLE")
	recs, err := testkit.JSONLines(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), secret) || strings.Contains(out.String(), "K7MDENG") {
		t.Fatalf("a secret is in the log:\n%s", out.String())
	}
	for i, want := range []string{"iam: [redacted] rejected", "token [redacted]", "[redacted] [redacted]"} {
		got := recs[i]["error"]
		if got == nil {
			got = recs[i]["err"]
		}
		if got != want {
			t.Errorf("record %d: %v, want %q", i, got, want)
		}
	}
	if recs[3]["key_id"] != "AKIAIOSFODNN7EXAMPLE" {
		t.Errorf("key id changed: %v", recs[3])
	}
}
