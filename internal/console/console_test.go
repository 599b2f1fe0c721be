package console_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/console"
)

var at = time.Date(2026, 3, 1, 9, 30, 5, 0, time.UTC)

// logAt logs one record at the fixed time through a handler, as the
// rotator's logger (system=rotator) does unless system says otherwise.
func logAt(h slog.Handler, system string, level slog.Level, msg string, args ...any) {
	log := slog.New(h).With("system", system)
	r := slog.NewRecord(at, level, msg, 0)
	r.Add(args...)
	_ = log.Handler().Handle(context.Background(), r)
}

func TestEventLines(t *testing.T) {
	for _, tc := range []struct {
		name, system string
		level        slog.Level
		msg          string
		args         []any
		want         string
	}{
		{"created, with the next step", "rotator", slog.LevelInfo, "new access key AKIAAAAAAAAAAAAAAAAA is current for ci-bot",
			[]any{"event", keyrot.EventKeyCreated, "user", "ci-bot", "key_id", "AKIAAAAAAAAAAAAAAAAA",
				"next", "previous key AKIABBBBBBBBBBBBBBBB will be deactivated", "next_at", "2026-03-01T09:30:20Z"},
			"09:30:05  ci-bot        key created      AKIAAAAAAAAAAAAAAAAA  previous key AKIABBBBBBBBBBBBBBBB will be deactivated in 15s\n"},
		{"deleted, nothing next", "rotator", slog.LevelInfo, "access key AKIABBBBBBBBBBBBBBBB of ci-bot was deleted",
			[]any{"event", keyrot.EventKeyDeleted, "user", "ci-bot", "key_id", "AKIABBBBBBBBBBBBBBBB"},
			"09:30:05  ci-bot        key deleted      AKIABBBBBBBBBBBBBBBB\n"},
		{"next step overdue", "rotator", slog.LevelInfo, "access key AKIABBBBBBBBBBBBBBBB of ci-bot is now inactive",
			[]any{"event", keyrot.EventKeyDeactivated, "user", "ci-bot", "key_id", "AKIABBBBBBBBBBBBBBBB",
				"next", "key AKIABBBBBBBBBBBBBBBB will be deleted", "next_at", "2026-03-01T09:30:00Z"},
			"09:30:05  ci-bot        key deactivated  AKIABBBBBBBBBBBBBBBB  key AKIABBBBBBBBBBBBBBBB will be deleted now\n"},
		{"days", "rotator", slog.LevelInfo, "new access key",
			[]any{"event", keyrot.EventKeyCreated, "user", "deploy-bot", "key_id", "AKIAAAAAAAAAAAAAAAAA",
				"next", "next rotation", "next_at", "2026-05-30T09:30:05Z"},
			"09:30:05  deploy-bot    key created      AKIAAAAAAAAAAAAAAAAA  next rotation in 90d\n"},
		{"failure", "rotator", slog.LevelError, "rotation of ci-bot has failed 3 times",
			[]any{"event", keyrot.EventRotationFailed, "user", "ci-bot", "error", "iam: throttled"},
			"09:30:05  ci-bot        FAILED           -                     rotation of ci-bot has failed 3 times: iam: throttled\n"},
		{"warning", "rotator", slog.LevelWarn, "key AKIABBBBBBBBBBBBBBBB was used after it was replaced",
			[]any{"event", keyrot.EventWarning, "user", "ci-bot", "warning", keyrot.WarnKeyInUse, "key_id", "AKIABBBBBBBBBBBBBBBB"},
			"09:30:05  ci-bot        warning          AKIABBBBBBBBBBBBBBBB  key AKIABBBBBBBBBBBBBBBB was used after it was replaced\n"},
		{"failure, summary as an attribute", "rotator", slog.LevelError, "rotation failed",
			[]any{"event", keyrot.EventRotationFailed, "user", "ci-bot", "summary", "rotation of ci-bot has failed 3 times", "error", "iam: throttled"},
			"09:30:05  ci-bot        FAILED           -                     rotation of ci-bot has failed 3 times: iam: throttled\n"},
		{"warning, summary as an attribute", "rotator", slog.LevelWarn, "warning",
			[]any{"event", keyrot.EventWarning, "user", "ci-bot", "warning", keyrot.WarnKeyInUse, "key_id", "AKIABBBBBBBBBBBBBBBB", "summary", "key AKIABBBBBBBBBBBBBBBB was used after it was replaced"},
			"09:30:05  ci-bot        warning          AKIABBBBBBBBBBBBBBBB  key AKIABBBBBBBBBBBBBBBB was used after it was replaced\n"},
		{"a warning that is not an event", "rotator", slog.LevelWarn, "pass failed; the next pass retries",
			[]any{"user", "ci-bot", "error", "sts: not yet valid", "failures", 1},
			"09:30:05  ci-bot        warning          -                     pass failed; the next pass retries error=\"sts: not yet valid\" failures=1\n"},
		{"an email sent is not shown", "email", slog.LevelInfo, "email sent",
			[]any{"event", keyrot.EventKeyCreated, "user", "ci-bot", "to", "security@example.com"}, ""},
		{"an email that failed is", "email", slog.LevelError, "email failed",
			[]any{"event", keyrot.EventKeyCreated, "to", "security@example.com"},
			"09:30:05  -             error            -                     email failed event=key_created to=security@example.com\n"},
		{"informational records are not shown", "http", slog.LevelInfo, "api listening", []any{"addr", "127.0.0.1:8000"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			logAt(console.New(&out, console.Options{Location: time.UTC}), tc.system, tc.level, tc.msg, tc.args...)
			if got := out.String(); got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestColourOnlyWhenAsked(t *testing.T) {
	args := []any{"event", keyrot.EventKeyCreated, "user", "ci-bot", "key_id", "AKIAAAAAAAAAAAAAAAAA"}
	var plain, coloured bytes.Buffer
	logAt(console.New(&plain, console.Options{}), "rotator", slog.LevelInfo, "created", args...)
	logAt(console.New(&coloured, console.Options{Color: true}), "rotator", slog.LevelInfo, "created", args...)
	if strings.Contains(plain.String(), "\x1b[") {
		t.Errorf("colour without Color: %q", plain.String())
	}
	if !strings.Contains(coloured.String(), "\x1b[32mkey created") {
		t.Errorf("no colour with Color: %q", coloured.String())
	}
}

func TestDebugShowsEverything(t *testing.T) {
	var out bytes.Buffer
	logAt(console.New(&out, console.Options{Level: slog.LevelDebug, Location: time.UTC}), "http", slog.LevelInfo, "api listening", "addr", "127.0.0.1:8000")
	if want := "09:30:05  -             info             -                     api listening addr=127.0.0.1:8000\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

// A value that logs itself (keyrot.Credentials) shows what it chooses, and
// groups become dotted keys: the secret never reaches the terminal.
func TestSecretsStayOut(t *testing.T) {
	creds := keyrot.Credentials{UserName: "ci-bot", AccessKeyID: "AKIAAAAAAAAAAAAAAAAA", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	var out bytes.Buffer
	log := slog.New(console.New(&out, console.Options{})).WithGroup("store")
	log.Warn("store new key failed; retrying", "creds", creds)
	if got := out.String(); strings.Contains(got, creds.SecretAccessKey) || !strings.Contains(got, "store.creds.key_id=AKIAAAAAAAAAAAAAAAAA") {
		t.Errorf("line %q", got)
	}
}
