package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

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
	if runtime.GOOS != "linux" {
		t.Skip("the Runtime Interface Emulator runs on Linux only")
	}
	rie, err := exec.LookPath("aws-lambda-rie")
	if err != nil {
		t.Skip("aws-lambda-rie not on PATH: go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d (CI does)")
	}
	bootstrap := buildBootstrap(t)

	sb := sandboxtest.Start(t, sandbox.Options{Seed: 5})
	cfg := sandboxtest.Config(t, sb)
	ctx := context.Background()
	iamc := awsiam.NewFromConfig(cfg)
	if _, err := iamc.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("deployer")}); err != nil {
		t.Fatalf("create user: %v", err)
	}
	id, secret := sb.AdminCredentials()

	api, rapi := testkit.FreeAddr(t), testkit.FreeAddr(t)
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", api, "--runtime-api-address", rapi, bootstrap)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_ENDPOINT_URL=" + sb.URL(),
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=" + id,
		"AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_LAMBDA_FUNCTION_NAME=iam-key-rotation-Function-RIE",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=60",
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
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Its own process group, so that cleanup ends RIE and bootstrap both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start aws-lambda-rie: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})

	// RIE logs "exec '<bootstrap>'" just before it listens; the runtime's
	// stdout (our JSON lines and RIE's REPORT lines) goes to its stdout.
	execLogged := make(chan struct{})
	initReport := make(chan float64, 1)
	go scanLines(stderr, func(line string) {
		if strings.Contains(line, "exec '") {
			close(execLogged)
		}
		if m := initReportRE.FindStringSubmatch(line); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			initReport <- ms
		}
	})
	out := &testkit.Buffer{}
	outDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(out, stdout)
		close(outDone)
	}()
	select {
	case <-execLogged:
	case <-time.After(30 * time.Second):
		t.Fatal("aws-lambda-rie did not start in 30s")
	}

	var res result
	body := invokeRIE(t, api, `{"source":"aws.events","detail-type":"Scheduled Event","detail":{}}`)
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("invoke response %s: %v", body, err)
	}
	if got, want := res.Created, 1; got != want {
		t.Fatalf("created = %d, want %d (response %s)\n%s", got, want, body, out.String())
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
	if got, want := res.Results[0].Current, creds.AccessKeyID; got != want {
		t.Errorf("response names key %s as current, want %s", got, want)
	}

	// A second invocation reuses the initialised engine and has nothing to do.
	if err := json.Unmarshal(invokeRIE(t, api, `{}`), &res); err != nil {
		t.Fatal(err)
	}
	if res.Created+res.Deactivated+res.Deleted != 0 {
		t.Errorf("second invocation changed keys: %+v", res)
	}

	select {
	case ms := <-initReport:
		t.Logf("bootstrap init under RIE: %.2f ms", ms)
	case <-time.After(10 * time.Second):
		t.Error("RIE reported no init duration")
	}
	// The logs: JSON, EMF, and never the secret.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-outDone
	logs := out.String()
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

var (
	initReportRE = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)
	readyRE      = regexp.MustCompile(`"msg":"ready".*?"init_ms":([0-9]+)`)
)

// buildBootstrap builds the function for this machine with the release flags.
func buildBootstrap(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", "lambda.norpc", "-o", path, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build bootstrap: %v\n%s", err, out)
	}
	if fi, err := os.Stat(path); err == nil {
		t.Logf("bootstrap (linux/%s, stripped): %d bytes", runtime.GOARCH, fi.Size())
	}
	return path
}

// invokeRIE posts an event to RIE's Invoke API and returns the response.
// RIE listens a moment after it logs its start: a refused connection is
// retried, for at most 5 s.
func invokeRIE(t *testing.T, addr, event string) []byte {
	t.Helper()
	url := "http://" + addr + "/2015-03-31/functions/function/invocations"
	client := &http.Client{Timeout: 90 * time.Second}
	giveUp := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Post(url, "application/json", strings.NewReader(event))
		if errors.Is(err, syscall.ECONNREFUSED) && time.Now().Before(giveUp) {
			<-time.After(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || strings.Contains(string(body), `"errorMessage"`) {
			t.Fatalf("invoke: %s: %s", resp.Status, body)
		}
		return body
	}
}

func scanLines(r io.Reader, f func(string)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
}
