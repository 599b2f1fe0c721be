package app_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestEmailedDirectReadGivesTheCurrentKey runs the exact AWS CLI command a
// key_created email gives, with the user's own key (as a pipeline holding
// its current key would), against the sandbox at the seed's 5-minute
// cadence, where the key moves through a ring of four secrets: it prints
// the current key, never a deleted one or nothing.
func TestEmailedDirectReadGivesTheCurrentKey(t *testing.T) {
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("aws CLI not installed (.ci/run installs Debian's awscli)")
	}
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	h.createUser("ci-bot", 0)
	cfg := h.config("ci-bot")
	cfg.Notify.Via, cfg.Notify.Sender, cfg.Notify.Admin = "ses", "keyrot@example.com", "security@example.com"
	cfg.Notify.SendRate = 1000
	if got := cfg.Policy().RingSize(); got < 2 {
		t.Fatalf("ring of %d: the test needs a ring", got)
	}
	a, err := app.New(ctx, cfg, app.Options{AWS: &h.aws, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	// Three rotations: the current key is now in ring member 3, and the
	// primary secret holds no value at all.
	start := h.clock.Now()
	h.runUntil(a, start.Add(11*time.Minute))
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Close(cctx); err != nil { // flush the email queue
		t.Fatal(err)
	}
	cur := h.checkInvariants(a, "ci-bot")
	if cur.Generation < 3 {
		t.Fatalf("generation %d after 11 minutes, want at least 3", cur.Generation)
	}

	var command string
	for _, m := range h.sb.Outbox() {
		if !strings.HasPrefix(m.Subject, "[keyrot] key created: ci-bot "+cur.AccessKeyID) {
			continue
		}
		for _, line := range strings.Split(m.Text, "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "aws secretsmanager get-secret-value") {
				command = line
			}
		}
	}
	if command == "" {
		t.Fatalf("no direct-read command in the key_created email of %s", cur.AccessKeyID)
	}
	if !strings.Contains(command, "keyrot:current-secret") {
		t.Errorf("command %q does not follow the ring's pointer", command)
	}

	// The CLI in CI (Debian's 2.9) does not read AWS_ENDPOINT_URL: an `aws`
	// on PATH adds the sandbox's endpoint to every call, the nested one too,
	// so the email's command runs exactly as written.
	dir := t.TempDir()
	wrapper := "#!/bin/sh\nexec " + bin + " --endpoint-url " + h.sb.URL() + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "aws"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = sandboxtest.CLIEnv(dir, cur.AccessKeyID, cur.SecretAccessKey,
		"PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", command, err, redact(string(out), cur.SecretAccessKey))
	}
	var got struct{ UserName, AccessKeyId, SecretAccessKey string }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("output is not the stored key: %v\n%s", err, redact(string(out), cur.SecretAccessKey))
	}
	if got.AccessKeyId != cur.AccessKeyID || got.SecretAccessKey != cur.SecretAccessKey {
		t.Errorf("the email's command read key %s, the current key is %s", got.AccessKeyId, cur.AccessKeyID)
	}
}

func redact(s, secret string) string { return strings.ReplaceAll(s, secret, "[secret]") }
