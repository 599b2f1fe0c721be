package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
	"github.com/keyrot/keyrot/secretsmanager"
)

// TestBootstrapUnderRIE builds bootstrap as `make lambda` does, runs it
// under the AWS Lambda Runtime Interface Emulator with the sandbox as its
// AWS, invokes it over HTTP as Lambda's Invoke API, and sees a rotation.
// CI installs aws-lambda-rie (see .ci/run); without it the test is skipped.
func TestBootstrapUnderRIE(t *testing.T) {
	rie := testkit.RequireRIE(t)
	bootstrap := testkit.BuildBootstrap(t, ".")

	sb := sandboxtest.Start(t, sandbox.Options{Seed: 5})
	cfg := sandboxtest.Config(t, sb)
	ctx := context.Background()
	iamc := awsiam.NewFromConfig(cfg)
	if _, err := iamc.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("deployer")}); err != nil {
		t.Fatalf("create user: %v", err)
	}
	fn := testkit.StartRIE(t, rie, bootstrap, append(rieAWSEnv(sb, "iam-key-rotation-Function-RIE"),
		"KEYROT_USERS=deployer",
		"KEYROT_PATH_PREFIX=/",
		"KEYROT_ROTATE_EVERY=5m",
		"KEYROT_DEACTIVATE_AFTER=2m",
		"KEYROT_DELETE_AFTER=1m",
		"KEYROT_SECRET_PREFIX=iam-key-rotation/",
		"KEYROT_NOTIFY_VIA=log",
		"KEYROT_NOTIFY_SENDER=keys@example.com",
		"KEYROT_NOTIFY_ADMIN=admin@example.com",
		"KEYROT_LOG_FORMAT=json",
		"LOG_LEVEL=info",
	))

	var res fleet.PassReport
	body := fn.Invoke(t, `{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`)
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("invoke response %s: %v", body, err)
	}
	if got, want := res.Created, 1; got != want {
		t.Fatalf("created = %d, want %d (response %s)\n%s", got, want, body, fn.Output())
	}

	keys, err := iamc.ListAccessKeys(ctx, &awsiam.ListAccessKeysInput{UserName: aws.String("deployer")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(keys.AccessKeyMetadata), 1; got != want {
		t.Fatalf("user has %d keys, want %d", got, want)
	}
	store := secretsmanager.New(awssm.NewFromConfig(cfg), secretsmanager.Config{Prefix: "iam-key-rotation/"})
	creds, err := store.Current(ctx, "deployer")
	if err != nil {
		t.Fatalf("current credentials: %v", err)
	}
	if got, want := creds.AccessKeyID, aws.ToString(keys.AccessKeyMetadata[0].AccessKeyId); got != want {
		t.Errorf("secret holds key %s, IAM has %s", got, want)
	}
	if got, want := res.Results[0].CurrentKeyID, creds.AccessKeyID; got != want {
		t.Errorf("response names key %s as current, want %s", got, want)
	}

	// A second invocation reuses the initialised engine and has nothing to do.
	if err := json.Unmarshal(fn.Invoke(t, `{}`), &res); err != nil {
		t.Fatal(err)
	}
	if res.Created+res.Deactivated+res.Deleted != 0 {
		t.Errorf("second invocation changed keys: %+v", res)
	}

	if ms, ok := fn.InitDuration(); ok {
		t.Logf("bootstrap init under RIE: %.2f ms", ms)
	} else {
		t.Error("RIE reported no init duration")
	}
	// The logs: JSON, EMF, and never the secret.
	fn.Stop()
	logs := fn.Output()
	if strings.Contains(logs, creds.SecretAccessKey) {
		t.Fatal("the secret access key appears in the function's output")
	}
	if m := readyRE.FindStringSubmatch(logs); m != nil {
		t.Logf("bootstrap ready line: init_ms=%s", m[1])
	}
	for _, want := range []string{`"msg":"ready"`, `"CloudWatchMetrics"`, `"msg":"pass done"`, "REPORT RequestId"} {
		if !strings.Contains(logs, want) {
			t.Errorf("function output lacks %s:\n%s", want, logs)
		}
	}
}

// rieAWSEnv is the function's AWS environment under RIE: the sandbox's
// endpoint and admin key, and Lambda's own variables.
func rieAWSEnv(sb *sandbox.Server, function string) []string {
	id, secret := sb.AdminCredentials()
	return []string{"AWS_ENDPOINT_URL=" + sb.URL(), "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_LAMBDA_FUNCTION_NAME=" + function, "AWS_LAMBDA_FUNCTION_TIMEOUT=60"}
}

var readyRE = regexp.MustCompile(`"msg":"ready".*?"init_ms":([0-9]+)`)
