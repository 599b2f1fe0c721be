package sandbox_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestAWSCLI drives the sandbox with the AWS CLI (botocore's SigV4 signer and
// query serializer), as an operator would with --endpoint-url.
func TestAWSCLI(t *testing.T) {
	s := sandboxtest.Start(t, sandbox.Options{})
	cli := awsCLI(t, s)
	adminID, adminSecret := s.AdminCredentials()
	run := func(t *testing.T, id, secret string, args ...string) (string, error) {
		t.Helper()
		return cli(id, secret, "", args...)
	}

	if out, err := run(t, adminID, adminSecret, "iam", "create-user", "--user-name", "cli-user"); err != nil {
		t.Fatalf("create-user: %v\n%s", err, out)
	}
	out, err := run(t, adminID, adminSecret, "iam", "create-access-key", "--user-name", "cli-user")
	if err != nil {
		t.Fatalf("create-access-key: %v\n%s", err, out)
	}
	var created struct {
		AccessKey struct{ AccessKeyId, SecretAccessKey string }
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("create-access-key output: %v\n%s", err, out)
	}
	id, secret := created.AccessKey.AccessKeyId, created.AccessKey.SecretAccessKey

	out, err = run(t, id, secret, "sts", "get-caller-identity")
	if err != nil {
		t.Fatalf("get-caller-identity with the new key: %v\n%s", err, out)
	}
	if !strings.Contains(out, "arn:aws:iam::123456789012:user/cli-user") {
		t.Errorf("get-caller-identity = %s", out)
	}

	if out, err := run(t, adminID, adminSecret, "iam", "update-access-key", "--user-name", "cli-user",
		"--access-key-id", id, "--status", "Inactive"); err != nil {
		t.Fatalf("update-access-key: %v\n%s", err, out)
	}
	out, err = run(t, id, secret, "sts", "get-caller-identity")
	if err == nil {
		t.Fatalf("get-caller-identity with an inactive key succeeded: %s", out)
	}
	if !strings.Contains(out, "InvalidClientTokenId") {
		t.Errorf("get-caller-identity with an inactive key: %s", out)
	}

	out, err = run(t, adminID, "wrong", "iam", "list-users")
	if err == nil || !strings.Contains(out, "SignatureDoesNotMatch") {
		t.Errorf("list-users with a wrong secret: %v: %s", err, out)
	}
}

// awsCLI returns a function running the AWS CLI against s with the given
// key (and session token, if not empty), JSON output, no retries. It skips
// the test when the CLI is not installed.
func awsCLI(t *testing.T, s *sandbox.Server) func(id, secret, token string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not installed: apt-get install awscli")
	}
	dir := t.TempDir()
	return func(id, secret, token string, args ...string) (string, error) {
		extra := []string{"AWS_MAX_ATTEMPTS=1", "AWS_RETRY_MODE=standard"}
		if token != "" {
			extra = append(extra, "AWS_SESSION_TOKEN="+token)
		}
		cmd := exec.Command(bin, append(append([]string{}, args...), "--endpoint-url", s.URL(), "--output", "json")...)
		cmd.Env = sandboxtest.CLIEnv(dir, id, secret, extra...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// TestAWSCLIOrganization: the AWS CLI lists the Organization, assumes a
// member role and works in the member account with the session.
func TestAWSCLIOrganization(t *testing.T) {
	s := sandboxtest.Start(t, sandbox.Options{MemberAccounts: 2})
	cli := awsCLI(t, s)
	adminID, adminSecret := s.AdminCredentials()

	out, err := cli(adminID, adminSecret, "", "organizations", "list-accounts")
	if err != nil {
		t.Fatalf("organizations list-accounts: %v\n%s", err, out)
	}
	var listed struct{ Accounts []struct{ Id, Name string } }
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("list-accounts output: %v\n%s", err, out)
	}
	if len(listed.Accounts) != 3 || listed.Accounts[2].Id != member2ID || listed.Accounts[2].Name != "member-2" {
		t.Errorf("list-accounts = %+v", listed.Accounts)
	}

	out, err = cli(adminID, adminSecret, "", "sts", "assume-role", "--role-arn", sandbox.MemberRoleARN(member2ID), "--role-session-name", "cli")
	if err != nil {
		t.Fatalf("sts assume-role: %v\n%s", err, out)
	}
	var assumed struct {
		Credentials struct{ AccessKeyId, SecretAccessKey, SessionToken string }
	}
	if err := json.Unmarshal([]byte(out), &assumed); err != nil {
		t.Fatalf("assume-role output: %v\n%s", err, out)
	}
	c := assumed.Credentials
	out, err = cli(c.AccessKeyId, c.SecretAccessKey, c.SessionToken, "sts", "get-caller-identity")
	if err != nil || !strings.Contains(out, "arn:aws:sts::"+member2ID+":assumed-role/keyrot-member/cli") {
		t.Errorf("get-caller-identity with the session: %v\n%s", err, out)
	}
	out, err = cli(c.AccessKeyId, c.SecretAccessKey, c.SessionToken, "secretsmanager", "create-secret", "--name", "cli-secret", "--secret-string", "v")
	if err != nil || !strings.Contains(out, "arn:aws:secretsmanager:us-east-1:"+member2ID+":secret:cli-secret-") {
		t.Errorf("create-secret in the member account: %v\n%s", err, out)
	}
	out, err = cli(c.AccessKeyId, c.SecretAccessKey, "", "sts", "get-caller-identity")
	if err == nil || !strings.Contains(out, "InvalidClientTokenId") {
		t.Errorf("the session's key without its token: %v\n%s", err, out)
	}

	if err := s.DeleteMemberRole(member1ID); err != nil {
		t.Fatal(err)
	}
	out, err = cli(adminID, adminSecret, "", "sts", "assume-role", "--role-arn", sandbox.MemberRoleARN(member1ID), "--role-session-name", "cli")
	if err == nil || !strings.Contains(out, "AccessDenied") {
		t.Errorf("assume-role of a deleted role: %v\n%s", err, out)
	}
}
