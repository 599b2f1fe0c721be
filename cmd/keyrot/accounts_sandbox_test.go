package main

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestRotateAcrossAccountsOnSandbox runs the multi-account flow on the
// sandbox's Organization of three members (keyrot sandbox --accounts 3),
// which enforces the member role's trust policy: a missing role fails at
// sts:AssumeRole.
func TestRotateAcrossAccountsOnSandbox(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{MemberAccounts: 3})
	id, secret := sb.AdminCredentials()
	f := &orgFixture{url: sb.URL(), admin: sandboxtest.Config(t, sb), adminID: id, secret: secret}
	for _, a := range sb.Accounts() {
		if !a.Management {
			f.accounts = append(f.accounts, a.ID)
		}
	}
	members := map[string]aws.Config{}
	f.member = func(t *testing.T, acct string) aws.Config {
		if _, ok := members[acct]; !ok {
			members[acct] = sandboxtest.MemberConfig(t, sb, acct, "")
		}
		return members[acct]
	}
	for _, acct := range f.accounts {
		f.member(t, acct) // before a role goes missing
	}
	f.removeRole = func(t *testing.T, acct string) {
		if err := sb.DeleteMemberRole(acct); err != nil {
			t.Fatal(err)
		}
	}
	rotateAcrossAccounts(t, f)
}
