package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/testkit/fleettest"
)

var updatePassReport = flag.Bool("update", false, "rewrite internal/testkit/fleettest/testdata/pass_report.json")

// TestRotateReportIsTheLambdas: `keyrot rotate --dry-run -o json` over the
// fleettest world prints the JSON the Lambda returns for the same pass
// (cmd/keyrot-lambda's TestPassReportIsTheCLIs checks it against the same
// golden file).
func TestRotateReportIsTheLambdas(t *testing.T) {
	w := fleettest.New(t)
	w.Clock.Set(fleettest.PassAt)
	id, secret := w.Sandbox.AdminCredentials()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": w.Sandbox.URL(), "AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"), "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	env := fleettest.Env()
	var stdout, stderr strings.Builder
	m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Open: openFile, Clock: w.Clock,
		LookupEnv: func(k string) (string, bool) {
			if v, ok := env[k]; ok {
				return v, true
			}
			return os.LookupEnv(k)
		}}
	if code := m.Run(context.Background(), []string{"rotate", "--dry-run", "-o", "json"}); code != exitOK {
		t.Fatalf("rotate: exit %d\n%s", code, stderr.String())
	}
	fleettest.CheckPassReport(t, []byte(stdout.String()), *updatePassReport)
}
