package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
)

// offlineMain is a Main with no environment: the commands below fail, or
// print help, before they reach AWS.
func offlineMain() (*Main, *testkit.Buffer, *testkit.Buffer) {
	out, errOut := &testkit.Buffer{}, &testkit.Buffer{}
	return &Main{Stdout: out, Stderr: errOut, LookupEnv: func(string) (string, bool) { return "", false }, Open: openFile}, out, errOut
}

// TestHelpForEveryCommand: `keyrot help NAME` and `keyrot NAME -h` print the
// same help, to stdout, exit 0, with a description, the usage line, every
// flag the command accepts and examples.
func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range commandTable() {
		if c.run == nil {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			m, out, errOut := offlineMain()
			if code := m.Run(context.Background(), append([]string{"help"}, strings.Fields(c.name)...)); code != exitOK {
				t.Fatalf("help %s: exit %d: %s", c.name, code, errOut)
			}
			help := out.String()
			m, out, errOut = offlineMain()
			if code := m.Run(context.Background(), append(strings.Fields(c.name), "-h")); code != exitOK {
				t.Fatalf("%s -h: exit %d: %s", c.name, code, errOut)
			}
			if got := out.String(); got != help {
				t.Errorf("%s -h differs from help %s:\n%s\n---\n%s", c.name, c.name, got, help)
			}
			if errOut.String() != "" {
				t.Errorf("help wrote to stderr: %s", errOut)
			}
			for _, want := range []string{"keyrot " + c.name + ": " + c.summary + "\n", "Usage:\n  keyrot " + c.name, c.about, "Examples:\n  keyrot ", "Exit status:"} {
				if !strings.Contains(help, want) {
					t.Errorf("help lacks %q:\n%s", want, help)
				}
			}
			// Every flag in the usage line is documented under Flags.
			for _, f := range regexp.MustCompile(`\[?(--?[a-z-]+)`).FindAllStringSubmatch(c.args, -1) {
				if !strings.Contains(help, "\n  "+f[1]+" ") && !strings.Contains(help, "\n  "+f[1]+"\n") {
					t.Errorf("usage names %s, the flags do not:\n%s", f[1], help)
				}
			}
		})
	}
}

func TestTopLevelHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		m, out, _ := offlineMain()
		if code := m.Run(context.Background(), args); code != exitOK {
			t.Fatalf("%v: exit %d", args, code)
		}
		for _, c := range commandTable() {
			if c.run != nil && !strings.Contains(out.String(), "\n  "+c.name+" ") {
				t.Errorf("%v does not list %s:\n%s", args, c.name, out)
			}
		}
	}
	m, out, _ := offlineMain()
	if code := m.Run(context.Background(), []string{"apikey", "-h"}); code != exitOK || !strings.Contains(out.String(), "keyrot help apikey new") {
		t.Errorf("apikey -h: exit %d:\n%s", code, out)
	}
}

// TestUsageErrors: every kind of bad command line exits 2 with one line
// naming the command and the problem, and a pointer to the help.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{nil, "Usage:\n  keyrot COMMAND"},
		{[]string{"frobnicate"}, `keyrot: unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `keyrot help: no help for "frobnicate": not a command`},
		{[]string{"status", "--nope"}, "keyrot status: flag provided but not defined: -nope\nRun \"keyrot help status\" for usage.\n"},
		{[]string{"rotate", "-o"}, "keyrot rotate: flag needs an argument: -o\n"},
		{[]string{"rotate", "-o", "yaml"}, "keyrot rotate: -o must be text or json\n"},
		{[]string{"status", "extra"}, "keyrot status: unexpected argument \"extra\"\n"},
		{[]string{"version", "extra"}, "keyrot version: unexpected argument \"extra\"\n"},
		{[]string{"credentials"}, "keyrot credentials: want one USER: keyrot credentials USER [flags]\nRun \"keyrot help credentials\" for usage.\n"},
		{[]string{"credentials", "a", "b"}, "keyrot credentials: want one USER"},
		{[]string{"apikey"}, "Usage:\n  keyrot apikey new|rotate"},
		{[]string{"apikey", "renew", "ci"}, `keyrot apikey: unknown subcommand "renew": want new|rotate NAME [flags]`},
		{[]string{"apikey", "new"}, "keyrot apikey new: want one NAME: keyrot apikey new NAME [flags]\n"},
		{[]string{"apikey", "new", "ci", "--overlap", "1d"}, "keyrot apikey new: flag provided but not defined: -overlap\n"},
		{[]string{"apikey", "rotate", "ci", "--overlap", "soon"}, "keyrot apikey rotate: --overlap \"soon\": want a duration such as 7d\n"},
		{[]string{"report", "--max-age", "0s"}, "keyrot report: "},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			m, out, errOut := offlineMain()
			if code := m.Run(context.Background(), tt.args); code != exitUsage {
				t.Fatalf("exit %d, want %d: %s", code, exitUsage, errOut)
			}
			if !strings.Contains(errOut.String(), tt.says) {
				t.Errorf("stderr does not say %q:\n%s", tt.says, errOut)
			}
			if out.String() != "" {
				t.Errorf("a usage error wrote to stdout: %s", out)
			}
			if d := doubledPrefix(errOut.String()); d != "" {
				t.Errorf("stderr repeats a prefix: %q", d)
			}
		})
	}
}

// TestErrorTextDropsRepeatedPrefixes: exitCode prints every error after
// "keyrot COMMAND: ", so the prefixes that say the same again go.
func TestErrorTextDropsRepeatedPrefixes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"rotate", fmt.Errorf("keyrot: user %q: %w", "nobody", keyrot.ErrUserNotManaged), `user "nobody": not managed by this configuration`},
		{"rotate", errors.New("keyrot: keyrot: list users: boom"), "list users: boom"},
		{"serve", errors.New("keyrot serve: api: read API keys: denied"), "api: read API keys: denied"},
		{"apikey rotate", errors.New("apikey rotate: no key named \"ci\""), `no key named "ci"`},
		{"status", &config.Error{Field: "region", Reason: "no AWS region"}, "config: region: no AWS region"},
		{"status", errors.New("iam: list users: keyrot: nested"), "iam: list users: keyrot: nested"},
		{"credentials", errors.New("api client: get credentials for \"x\": 401"), `api client: get credentials for "x": 401`},
	}
	for _, tt := range tests {
		if got := errorText(tt.name, tt.err); got != tt.want {
			t.Errorf("errorText(%q, %q) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

// doubledPrefix returns the first stderr line whose message repeats a
// "keyrot" prefix, or "".
func doubledPrefix(stderr string) string {
	for _, line := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, "keyrot "); ok {
			if i := strings.Index(rest, ": "); i >= 0 && (strings.HasPrefix(rest[i+2:], "keyrot:") || strings.HasPrefix(rest[i+2:], "keyrot "+rest[:i]) || strings.HasPrefix(rest[i+2:], rest[:i]+":")) {
				return line
			}
		}
	}
	return ""
}
