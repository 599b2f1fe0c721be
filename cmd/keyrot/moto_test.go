package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/iam"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/internal/testkit/mototest"
)

// moto is one moto_server for this test binary, started on first use.
var moto mototest.Shared

// TestRotateOnMoto runs the command as a user would against a second AWS
// emulator, moto_server, found through the SDK's standard environment
// (AWS_ENDPOINT_URL) and checking every signature: a one-shot rotation, then
// `keyrot credentials --direct` reading the key back from Secrets Manager.
func TestRotateOnMoto(t *testing.T) {
	srv := moto.Get(t)
	id, secret := srv.AdminCredentials()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": srv.URL, "AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"), "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	tm := &testMain{t: t, aws: srv.Config(), dir: dir, stdout: &testkit.Buffer{}, stderr: &testkit.Buffer{}}
	user := srv.Namespace() + "ci-bot"
	tm.createUser(user)
	cfg := tm.writeConfig(strings.ReplaceAll(testConfig, "ci-bot", user))
	ctx := context.Background()

	if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
		t.Fatalf("rotate exit %d: %s", code, tm.stderr)
	}
	keys, err := awsiam.NewFromConfig(tm.aws).ListAccessKeys(ctx, &awsiam.ListAccessKeysInput{UserName: aws.String(user)})
	if err != nil || len(keys.AccessKeyMetadata) != 1 {
		t.Fatalf("keys after rotate = %v, %v", keys, err)
	}
	tm.stdout.Reset()
	if code := tm.run(ctx, "credentials", user, "--direct", "--format", "json"); code != exitOK {
		t.Fatalf("credentials --direct exit %d: %s", code, tm.stderr)
	}
	var got struct{ AccessKeyId, SecretAccessKey string } //nolint:revive // the JSON's own spelling
	if err := json.Unmarshal([]byte(tm.stdout.String()), &got); err != nil {
		t.Fatalf("credentials output: %v: %s", err, tm.stdout)
	}
	if want := aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId); got.AccessKeyId != want {
		t.Fatalf("credentials --direct = %s, want the key IAM holds, %s", got.AccessKeyId, want)
	}
	creds := keyrot.Credentials{UserName: user, AccessKeyID: got.AccessKeyId, SecretAccessKey: got.SecretAccessKey}
	if err := iam.NewVerifier(tm.aws).VerifyKey(ctx, creds); err != nil {
		t.Fatalf("the served key is not accepted by STS: %v", err)
	}
}
