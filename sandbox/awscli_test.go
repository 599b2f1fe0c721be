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
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not installed: apt-get install awscli")
	}
	s := sandboxtest.Start(t, sandbox.Options{})
	dir := t.TempDir()
	adminID, adminSecret := s.AdminCredentials()

	run := func(t *testing.T, id, secret string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(bin, append(append([]string{}, args...), "--endpoint-url", s.URL(), "--output", "json")...)
		cmd.Env = sandboxtest.CLIEnv(dir, id, secret, "AWS_MAX_ATTEMPTS=1", "AWS_RETRY_MODE=standard")
		out, err := cmd.CombinedOutput()
		return string(out), err
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
