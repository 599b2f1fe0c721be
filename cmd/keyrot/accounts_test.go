package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/secretsmanager"
)

// orgFixture is an AWS Organization on an emulator: a management account
// (admin, whose credentials keyrot runs with) and member accounts, each with
// the role keyrot-member.
type orgFixture struct {
	url      string
	admin    aws.Config
	adminID  string
	secret   string
	accounts []string
	// member returns a config signed by an identity of the account that
	// may create users and read what keyrot stored there.
	member func(t *testing.T, account string) aws.Config
	// removeRole deletes the account's keyrot-member role.
	removeRole func(t *testing.T, account string)
}

// testMain is a testMain running keyrot with the management account's credentials.
func (f *orgFixture) testMain(t *testing.T) *testMain {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": f.url, "AWS_ACCESS_KEY_ID": f.adminID, "AWS_SECRET_ACCESS_KEY": f.secret, "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"), "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	return &testMain{t: t, aws: f.admin, dir: dir, stdout: &testkit.Buffer{}, stderr: &testkit.Buffer{}}
}

// createUser makes user in every member account.
func (f *orgFixture) createUser(t *testing.T, user string) {
	t.Helper()
	for _, id := range f.accounts {
		if _, err := awsiam.NewFromConfig(f.member(t, id)).CreateUser(t.Context(), &awsiam.CreateUserInput{UserName: aws.String(user)}); err != nil {
			t.Fatalf("account %s: create user %s: %v", id, user, err)
		}
	}
}

// keys counts user's access keys in an account.
func keysIn(t *testing.T, cfg aws.Config, user string) int {
	t.Helper()
	out, err := awsiam.NewFromConfig(cfg).ListAccessKeys(t.Context(), &awsiam.ListAccessKeysInput{UserName: aws.String(user)})
	if err != nil {
		t.Fatalf("list keys of %s: %v", user, err)
	}
	return len(out.AccessKeyMetadata)
}

// secretsIn lists the names of the secrets in an account.
func secretsIn(t *testing.T, cfg aws.Config) []string {
	t.Helper()
	out, err := awssm.NewFromConfig(cfg).ListSecrets(t.Context(), &awssm.ListSecretsInput{})
	if err != nil {
		t.Fatalf("list secrets: %v", err)
	}
	var names []string
	for _, s := range out.SecretList {
		names = append(names, aws.ToString(s.Name))
	}
	return names
}

// accountsConfig is the config of a rotation of user in the accounts the
// accounts section (YAML flow mapping) selects.
func accountsConfig(user, accounts string) string {
	return fmt.Sprintf("users: {names: [%s]}\nrotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\nnotify: {via: log}\nlog: {format: json}\naccounts: %s\n", user, accounts)
}

// rotateAcrossAccounts is the end-to-end flow of issue 15 on an emulated
// Organization of three members: one `keyrot rotate` rotates the user in
// each selected account, stores each secret in its own account, leaves the
// others untouched and stores nothing in the management account; with one
// account's role missing, the others rotate and the failure is reported
// once.
func rotateAcrossAccounts(t *testing.T, f *orgFixture) {
	ctx := context.Background()
	if len(f.accounts) != 3 {
		t.Fatalf("fixture has %d member accounts, want 3", len(f.accounts))
	}
	a1, a2, a3 := f.accounts[0], f.accounts[1], f.accounts[2]
	tm := f.testMain(t)
	check := func(user string, rotated, untouched []string) {
		t.Helper()
		for _, id := range rotated {
			cfg := f.member(t, id)
			if got := keysIn(t, cfg, user); got != 1 {
				t.Errorf("account %s: %s has %d keys, want the 1 keyrot made", id, user, got)
			}
			// The account's own key, stored in the account's own secret.
			keys, err := awsiam.NewFromConfig(cfg).ListAccessKeys(ctx, &awsiam.ListAccessKeysInput{UserName: aws.String(user)})
			if err != nil || len(keys.AccessKeyMetadata) == 0 {
				t.Fatalf("account %s: keys of %s: %v", id, user, err)
			}
			creds, err := secretsmanager.New(awssm.NewFromConfig(cfg), secretsmanager.Config{Prefix: "iam-key-rotation/"}).Current(ctx, user)
			if err != nil || creds.AccessKeyID != aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId) {
				t.Errorf("account %s: stored key %s (%v), want the account's IAM key %s", id, creds.AccessKeyID, err, aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId))
			}
			if got := secretsIn(t, cfg); !containsSecret(got, "iam-key-rotation/"+user) {
				t.Errorf("account %s: secrets %v, want iam-key-rotation/%s stored there", id, got, user)
			}
		}
		for _, id := range untouched {
			cfg := f.member(t, id)
			if got := keysIn(t, cfg, user); got != 0 {
				t.Errorf("account %s (not selected): %s has %d keys, want none", id, user, got)
			}
			if got := secretsIn(t, cfg); containsSecret(got, "iam-key-rotation/"+user) {
				t.Errorf("account %s (not selected): holds %v", id, got)
			}
		}
		if got := secretsIn(t, f.admin); len(got) != 0 {
			t.Errorf("management account holds secrets %v, want none", got)
		}
	}

	t.Run("ids", func(t *testing.T) {
		f.createUser(t, "ids-bot")
		cfg := tm.writeConfig(accountsConfig("ids-bot", fmt.Sprintf("{ids: ['%s', '%s']}", a1, a2)))
		if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
			t.Fatalf("rotate exit %d: %s\n%s", code, tm.stdout, tm.stderr)
		}
		for _, id := range []string{a1, a2} {
			if !strings.Contains(tm.stdout.String(), "account "+id) {
				t.Errorf("output does not name account %s:\n%s", id, tm.stdout)
			}
		}
		check("ids-bot", []string{a1, a2}, []string{a3})
	})
	t.Run("organization with exclude", func(t *testing.T) {
		f.createUser(t, "org-bot")
		tm.stdout.Reset()
		cfg := tm.writeConfig(accountsConfig("org-bot", fmt.Sprintf("{organization: true, exclude: ['%s']}", a2)))
		if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
			t.Fatalf("rotate exit %d: %s\n%s", code, tm.stdout, tm.stderr)
		}
		check("org-bot", []string{a1, a3}, []string{a2})
	})
	t.Run("role missing", func(t *testing.T) {
		f.createUser(t, "role-bot")
		f.removeRole(t, a2)
		tm.stdout.Reset()
		tm.stderr.Reset()
		cfg := tm.writeConfig(accountsConfig("role-bot", "{organization: true}"))
		if code := tm.run(ctx, "rotate", "--config", cfg); code != exitFailed {
			t.Fatalf("rotate exit %d, want %d (an account failed): %s\n%s", code, exitFailed, tm.stdout, tm.stderr)
		}
		check("role-bot", []string{a1, a3}, nil)
		if got := strings.Count(tm.stderr.String(), `"msg":"account failed"`); got != 1 {
			t.Errorf("account failure logged %d times, want once:\n%s", got, tm.stderr)
		}
		if !strings.Contains(tm.stderr.String(), `"account":"`+a2+`"`) {
			t.Errorf("the failure does not name account %s:\n%s", a2, tm.stderr)
		}
		if got := strings.Count(tm.stderr.String(), `"subject":"[keyrot] FAILED rotation: account `+a2+`"`); got != 1 {
			t.Errorf("%d failure emails about account %s, want 1:\n%s", got, a2, tm.stderr)
		}

		// status names each account: its users, or why keyrot cannot work there.
		tm.stdout.Reset()
		// (-o json exits 0 with what it found, as in one account.)
		if code := tm.run(ctx, "status", "--config", cfg, "-o", "json"); code != exitOK {
			t.Fatalf("status exit %d: %s\n%s", code, tm.stdout, tm.stderr)
		}
		var rows []struct {
			Account, User, Error string
			CurrentKey           string `json:"current_key"`
		}
		if err := json.Unmarshal([]byte(tm.stdout.String()), &rows); err != nil {
			t.Fatalf("status output: %v\n%s", err, tm.stdout)
		}
		byAccount := map[string]string{}
		for _, r := range rows {
			byAccount[r.Account] = r.User + "|" + r.CurrentKey + "|" + r.Error
		}
		for _, id := range []string{a1, a3} {
			if !strings.HasPrefix(byAccount[id], "role-bot|AKIA") {
				t.Errorf("status of account %s: %q, want role-bot's current key", id, byAccount[id])
			}
		}
		if !strings.Contains(byAccount[a2], "|account "+a2+": ") && !strings.Contains(byAccount[a2], ": account "+a2+": ") {
			t.Errorf("status of account %s: %q, want why keyrot cannot work there", a2, byAccount[a2])
		}
	})
}

func containsSecret(names []string, want string) bool {
	for _, n := range names {
		if n == want {
			return true
		}
	}
	return false
}
