package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestAPIBootstrapUnderRIE builds the API function as `make lambda` does,
// runs it under the Lambda Runtime Interface Emulator with the sandbox as
// its AWS, and sends it function URL events beside the same requests to a
// `keyrot serve` built from this tree, configured alike: a good key gets
// the credentials, a bad one 401, and status, body and headers are the
// same (less Date and Content-Length, which the function URL sets).
// CI installs aws-lambda-rie (see .ci/run); without it the test is skipped.
func TestAPIBootstrapUnderRIE(t *testing.T) {
	rie := testkit.RequireRIE(t)
	bootstrap := testkit.BuildBootstrap(t, ".")
	keyrotBin := filepath.Join(t.TempDir(), "keyrot")
	build := exec.Command("go", "build", "-trimpath", "-o", keyrotBin, "../keyrot")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build keyrot: %v\n%s", err, out)
	}

	sb := sandboxtest.Start(t, sandbox.Options{Seed: 13})
	cfg := sandboxtest.Config(t, sb)
	ctx := context.Background()
	engine := seedStack(t, cfg, nil)
	if sum, err := engine.Rotator.ReconcileAll(ctx, keyrot.RunOptions{}); err != nil || sum.Created != 1 {
		t.Fatalf("rotate: %v %+v", err, sum)
	}
	creds, err := engine.Store.Current(ctx, "deployer")
	if err != nil {
		t.Fatal(err)
	}

	id, secret := sb.AdminCredentials()
	common := []string{"AWS_ENDPOINT_URL=" + sb.URL(), "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + secret}
	for k, v := range env {
		common = append(common, k+"="+v)
	}
	fn := testkit.StartRIE(t, rie, bootstrap, append(common, "AWS_LAMBDA_FUNCTION_NAME=iam-key-rotation-ApiFunction-RIE", "AWS_LAMBDA_FUNCTION_TIMEOUT=10"))
	serveURL := startServe(t, keyrotBin, append(common, "HOME="+t.TempDir(), "KEYROT_API_LISTEN="+testkit.FreeAddr(t)))

	for _, tt := range []struct {
		name, path, key string
		status          int
	}{
		{"good key", "/credentials/deployer", apiKey, 200},
		{"good key, credential_process", "/credentials/deployer?format=credential_process", apiKey, 200},
		{"good key, list", "/credentials", apiKey, 200},
		{"bad key", "/credentials/deployer", "Wr0ngKeyWr0ngKeyWr0ngKeyWr0ngKeyWr0ngKeyWr0ngKey", 401},
		{"no key", "/credentials/deployer", "", 401},
		{"unmanaged user", "/credentials/nobody", apiKey, 404},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := serveGet(t, serveURL+tt.path, tt.key)
			rawPath, rawQuery, _ := strings.Cut(tt.path, "?")
			headers := map[string]string{}
			if tt.key != "" {
				headers["x-api-key"] = tt.key
			}
			ev, _ := json.Marshal(urlEvent("GET", rawPath, rawQuery, headers))
			var got events.LambdaFunctionURLResponse
			if err := json.Unmarshal(fn.Invoke(t, string(ev)), &got); err != nil {
				t.Fatal(err)
			}
			if got.StatusCode != tt.status || want.StatusCode != tt.status {
				t.Fatalf("status: lambda %d, serve %d, want %d (%s)", got.StatusCode, want.StatusCode, tt.status, got.Body)
			}
			if got.Body != want.Body {
				t.Errorf("body:\nlambda %s\nserve  %s", got.Body, want.Body)
			}
			if want.Headers["Cache-Control"] != "no-store" || want.Headers["Content-Type"] == "" {
				t.Errorf("keyrot serve's headers lack Cache-Control or Content-Type: %v", want.Headers)
			}
			if !reflect.DeepEqual(got.Headers, want.Headers) {
				t.Errorf("headers:\nlambda %v\nserve  %v", got.Headers, want.Headers)
			}
			if tt.status == 200 && !strings.Contains(got.Body, creds.AccessKeyID) {
				t.Errorf("the body does not carry the current key %s: %s", creds.AccessKeyID, got.Body)
			}
		})
	}

	if ms, ok := fn.InitDuration(); ok {
		t.Logf("API bootstrap init under RIE: %.2f ms", ms)
	}
	fn.Stop()
	logs := fn.Output()
	for _, s := range []string{creds.SecretAccessKey, apiKey} {
		if strings.Contains(logs, s) {
			t.Fatal("a secret appears in the function's output")
		}
	}
	for _, want := range []string{`"msg":"ready"`, `"msg":"credentials read"`, `"outcome":"granted"`, "REPORT RequestId"} {
		if !strings.Contains(logs, want) {
			t.Errorf("function output lacks %s:\n%s", want, logs)
		}
	}
}

// startServe runs `keyrot serve` with exactly env and returns its URL once
// it logs that it listens.
func startServe(t *testing.T, bin string, env []string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	listening := make(chan string, 1)
	logs := &testkit.Buffer{}
	go testkit.ScanLines(stderr, func(line string) {
		logs.Write([]byte(line + "\n"))
		var rec struct{ Msg, URL string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "api listening" && rec.URL != "" {
			listening <- rec.URL
		}
	})
	select {
	case u := <-listening:
		return u
	case <-time.After(30 * time.Second):
		t.Fatalf("keyrot serve did not listen in 30s:\n%s", logs)
	}
	return ""
}

// serveGet sends a GET to `keyrot serve` and returns the response in the
// function URL's shape: headers joined as the adapter joins them, without
// the ones the HTTP server (or, for the Lambda, the function URL) adds.
func serveGet(t *testing.T, url, key string) events.LambdaFunctionURLResponse {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	res := events.LambdaFunctionURLResponse{StatusCode: resp.StatusCode, Body: string(body), Headers: map[string]string{}}
	for name, values := range resp.Header {
		if name == "Date" || name == "Content-Length" {
			continue
		}
		res.Headers[name] = strings.Join(values, ", ")
	}
	return res
}
