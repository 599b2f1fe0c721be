package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"

	keyrothttp "github.com/keyrot/keyrot/http"
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

// TestDaemonAcrossAccountsOnSandbox runs `keyrot run` across two member
// accounts: it rotates ci-bot in each, and its API serves each account's
// key by /credentials/{account}/{user}, and answers 409 for the name both
// accounts hold.
func TestDaemonAcrossAccountsOnSandbox(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{MemberAccounts: 2})
	id, secret := sb.AdminCredentials()
	f := &orgFixture{url: sb.URL(), admin: sandboxtest.Config(t, sb), adminID: id, secret: secret}
	members := map[string]aws.Config{}
	for _, a := range sb.Accounts() {
		if !a.Management {
			f.accounts = append(f.accounts, a.ID)
			members[a.ID] = sandboxtest.MemberConfig(t, sb, a.ID, "")
		}
	}
	f.member = func(_ *testing.T, acct string) aws.Config { return members[acct] }
	f.createUser(t, "ci-bot")
	tm := f.testMain(t)
	apiKey, hash, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := tm.writeConfig(accountsConfig("ci-bot", "{organization: true}") +
		`api: {listen: "127.0.0.1:0", keys: [{name: admin, hash: "` + hash + `", users: ["*"], list: true}]}` + "\n")
	addrs, stop := tm.start("run", "--config", cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, acct := range f.accounts {
		if _, err := tm.stderr.WaitFor(ctx, regexp.MustCompile(`"account":"`+acct+`".*"event":"key_created"`)); err != nil {
			t.Fatalf("no key created in account %s: %v\n%s", acct, err, tm.stderr)
		}
	}
	api := addrs["api"]
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api+path, nil)
		req.Header.Set("X-API-Key", apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, acct := range f.accounts {
		keys, err := awsiam.NewFromConfig(members[acct]).ListAccessKeys(ctx, &awsiam.ListAccessKeysInput{UserName: aws.String("ci-bot")})
		if err != nil || len(keys.AccessKeyMetadata) != 1 {
			t.Fatalf("account %s: keys %v, %v", acct, keys, err)
		}
		want := aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId)
		if status, body := get("/credentials/" + acct + "/ci-bot"); status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET /credentials/%s/ci-bot: %d %s, want that account's key %s", acct, status, body, want)
		}
	}
	if status, body := get("/credentials/ci-bot"); status != http.StatusConflict {
		t.Errorf("GET /credentials/ci-bot: %d %s, want 409 (in two accounts)", status, body)
	}
	stop()

	// keyrot serve alone serves the keys the daemon stored in each account.
	addrs, stop = tm.start("serve", "--config", cfg)
	defer stop()
	api = addrs["api"]
	for _, acct := range f.accounts {
		if status, body := get("/credentials/" + acct + "/ci-bot"); status != http.StatusOK || !strings.Contains(body, "AKIA") {
			t.Errorf("serve: GET /credentials/%s/ci-bot: %d %s", acct, status, body)
		}
	}
	// The client names the account as the emails tell it to.
	t.Setenv("KEYROT_API_KEY", apiKey)
	t.Setenv("KEYROT_CACHE_DIR", t.TempDir())
	for _, format := range []string{"json", "credential_process"} {
		tm.stdout.Reset()
		if code := tm.run(ctx, "credentials", f.accounts[1]+"/ci-bot", "--api", api, "--format", format); code != exitOK || !strings.Contains(tm.stdout.String(), "AKIA") {
			t.Errorf("keyrot credentials %s/ci-bot --format %s: exit %d: %s %s", f.accounts[1], format, code, tm.stdout, tm.stderr)
		}
	}
}
