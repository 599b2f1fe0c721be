package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestSandboxAccounts: `keyrot sandbox --accounts 2` serves and prints an
// Organization, with the ExternalId of --external-id on its member roles.
func TestSandboxAccounts(t *testing.T) {
	out, errs := &testkit.Buffer{}, &testkit.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan map[string]string, 1), make(chan int, 1)
	go func() {
		m := &Main{Stdout: out, Stderr: errs, LookupEnv: func(string) (string, bool) { return "", false }, Open: openFile,
			Ready: func(a map[string]string) { ready <- a }}
		done <- m.Run(ctx, []string{"sandbox", "--listen", "127.0.0.1:0", "--accounts", "2", "--external-id", "ext-123"})
	}()
	var url string
	select {
	case addrs := <-ready:
		url = addrs["sandbox"]
	case code := <-done:
		t.Fatalf("sandbox exited %d: %s %s", code, out, errs)
	case <-time.After(30 * time.Second):
		t.Fatal("sandbox did not start")
	}
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("sandbox exit %d: %s", code, errs)
		}
	}()

	for _, want := range []string{
		"123456789012  management",
		"100000000001  member-1    ou-root-prod0001  role arn:aws:iam::100000000001:role/keyrot-member",
		"100000000002  member-2    ou-root-dev00001",
		url + "/_sandbox/accounts",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var accounts []sandbox.Account
	sandboxtest.GetJSON(t, url+"/_sandbox/accounts", &accounts)
	if len(accounts) != 3 || !accounts[0].Management || accounts[2].ID != "100000000002" {
		t.Errorf("accounts = %+v", accounts)
	}
	var role sandbox.MemberRole
	sandboxtest.GetJSON(t, url+"/_sandbox/accounts/100000000002/role", &role)
	if role.ExternalID != "ext-123" {
		t.Errorf("member role = %+v, want the --external-id", role)
	}
}

func TestSandboxAccountsBadCount(t *testing.T) {
	out, errs := &testkit.Buffer{}, &testkit.Buffer{}
	m := &Main{Stdout: out, Stderr: errs, LookupEnv: func(string) (string, bool) { return "", false }, Open: openFile}
	if code := m.Run(context.Background(), []string{"sandbox", "--listen", "127.0.0.1:0", "--accounts", "-1"}); code != 2 {
		t.Errorf("--accounts -1: exit %d, want 2: %s", code, errs)
	}
	if !strings.Contains(errs.String(), "member accounts -1") {
		t.Errorf("stderr = %s", errs)
	}
}
