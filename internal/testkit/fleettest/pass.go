package fleettest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// PassAt is when CheckPassReport's pass runs: alice's old key is due for
// deletion and bob's and dave's keys for rotation.
var PassAt = T0.Add(6 * time.Minute)

// Env is the world's configuration as KEYROT_* environment variables, for
// the commands and functions that read it from there (the CLI and the
// Lambda): the same users, exemption and timings as the world's engine.
func Env() map[string]string {
	return map[string]string{
		"KEYROT_REGION":        "us-east-1",
		"KEYROT_USERS":         strings.Join([]string{Adopted, Fresh, Exempt, Other, Missing}, ","),
		"KEYROT_EXEMPT_TAG":    ExemptTag,
		"KEYROT_IAM_RATE":      "10000",
		"KEYROT_CONCURRENCY":   "1",
		"KEYROT_STEP_LATENESS": "1s", // the default, which the Lambda would otherwise raise to 1m
		"KEYROT_NOTIFY_VIA":    "log",
		"KEYROT_LOG_FORMAT":    "json",
	}
}

// CheckPassReport compares report, the JSON of a dry-run pass over the
// world at PassAt with Env's configuration, with the one golden file every
// entry point's report is checked against (`keyrot rotate -o json`, the
// Lambda's response), so that they are the same JSON; update rewrites it.
func CheckPassReport(t testing.TB, report []byte, update bool) {
	t.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, report); err != nil {
		t.Fatalf("fleettest: the pass report is not JSON: %v\n%s", err, report)
	}
	var indented bytes.Buffer
	_ = json.Indent(&indented, compact.Bytes(), "", "  ")
	indented.WriteByte('\n')
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "testdata", "pass_report.json")
	if update {
		if err := os.WriteFile(path, indented.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fleettest: %v (run the test with -update)", err)
	}
	if !bytes.Equal(indented.Bytes(), want) {
		t.Errorf("the pass report differs from %s (-update to accept):\n--- got ---\n%s--- want ---\n%s", path, indented.Bytes(), want)
	}
}
