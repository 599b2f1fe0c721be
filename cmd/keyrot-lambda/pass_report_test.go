package main

import (
	"context"
	"encoding/json"
	"flag"
	"testing"

	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/internal/testkit/fleettest"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

var updatePassReport = flag.Bool("update", false, "rewrite internal/testkit/fleettest/testdata/pass_report.json")

// TestPassReportIsTheCLIs: the function's response to a dry run over the
// fleettest world is the JSON `keyrot rotate --dry-run -o json` prints for
// the same pass (cmd/keyrot's TestRotateReportIsTheLambdas checks it
// against the same golden file); its log is JSON, one object a line.
func TestPassReportIsTheCLIs(t *testing.T) {
	w := fleettest.New(t)
	w.Clock.Set(fleettest.PassAt)
	env := fleettest.Env()
	env["AWS_LAMBDA_FUNCTION_NAME"] = "keyrot"
	awsCfg := sandboxtest.Config(t, w.Sandbox)
	var out testkit.Buffer
	h, err := newHandler(context.Background(), options{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Stdout:    &out, AWS: &awsCfg, Clock: w.Clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.invoke(context.Background(), json.RawMessage(`{"dry_run": true}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(res) // as the Lambda runtime does
	if err != nil {
		t.Fatal(err)
	}
	fleettest.CheckPassReport(t, body, *updatePassReport)
	if _, err := testkit.JSONLines(out.Bytes()); err != nil {
		t.Errorf("the function's output: %v", err)
	}
}
