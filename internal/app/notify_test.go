package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestEmailsForEveryEventThroughSES runs real rotations on the sandbox with
// the SES sender and reads the sandbox's outbox: one email per event kind,
// to the admin and the owner, every section present, and no secret access
// key anywhere in any message.
func TestEmailsForEveryEventThroughSES(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	if _, err := h.iam.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("ci-bot"),
		Tags: []iamtypes.Tag{{Key: aws.String("keyrot:owner"), Value: aws.String("ci-team@example.com")}}}); err != nil {
		t.Fatal(err)
	}
	foreign, err := h.iam.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String("ci-bot")})
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{aws.ToString(foreign.AccessKey.SecretAccessKey)}

	cfg := h.config("ci-bot", "gone")
	cfg.Notify.Via, cfg.Notify.Sender, cfg.Notify.Admin = "ses", "keyrot@example.com", "security@example.com"
	cfg.Notify.SendRate = 1000
	cfg.Notify.APIURL = "https://keyrot.example.com"
	a, err := app.New(ctx, cfg, app.Options{AWS: &h.aws, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}

	// First pass: a key is created; the missing user is reported.
	h.pass(a, keyrot.RunOptions{})
	since := h.clock.Now()
	// The adopted key is still used after the switch: a key-in-use warning.
	old := sts.NewFromConfig(sandboxtest.UserConfig(t, h.sb, aws.ToString(foreign.AccessKey.AccessKeyId), secrets[0]))
	h.clock.Advance(time.Minute)
	if _, err := old.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatal(err)
	}
	h.runUntil(a, since.Add(4*time.Minute)) // deactivated, deleted
	// A rotation that keeps failing: CreateAccessKey errors past the SDK's
	// retries on three passes in a row, an incident worth one email; the
	// pass that works again ends it with another.
	h.sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: "CreateAccessKey", Kind: "5xx", Count: 9}}})
	h.clock.Set(since.Add(6 * time.Minute))
	for range 3 {
		if sum, _ := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{}); sum.Failed != 1 {
			t.Fatalf("failed = %d, want 1", sum.Failed)
		}
		h.clock.Advance(keyrot.DefaultPolicy().OrphanGrace) // the ambiguous create's intent is given up
	}
	h.sb.SetFaults(sandbox.Faults{})
	h.pass(a, keyrot.RunOptions{})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Close(cctx); err != nil { // flush the email queue
		t.Fatal(err)
	}

	// Every secret keyrot ever stored, to look for in the mail.
	secrets = append(secrets, storedSecrets(t, h, "ci-bot")...)

	outbox := h.sb.Outbox()
	bySubject := map[string]sandbox.Email{}
	failedMails := 0
	for _, m := range outbox {
		for _, s := range secrets {
			for _, part := range []string{m.Subject, m.Text, m.HTML, m.Raw} {
				if strings.Contains(part, s) {
					t.Fatalf("email %q contains a secret access key", m.Subject)
				}
			}
		}
		bySubject[m.Subject] = m
		if strings.HasPrefix(m.Subject, "[keyrot] FAILED") {
			failedMails++
		}
	}
	if failedMails != 1 {
		t.Errorf("%d FAILED emails for one incident, want 1", failedMails)
	}
	want := map[string][]string{ // subject prefix -> recipients
		"[keyrot] key created: ci-bot":        {"security@example.com", "ci-team@example.com"},
		"[keyrot] key deactivated: ci-bot":    {"security@example.com", "ci-team@example.com"},
		"[keyrot] key deleted: ci-bot":        {"security@example.com", "ci-team@example.com"},
		"[keyrot] FAILED rotation: ci-bot":    {"security@example.com", "ci-team@example.com"},
		"[keyrot] RECOVERED rotation: ci-bot": {"security@example.com", "ci-team@example.com"},
		"[keyrot] WARNING key in use: ci-bot": {"security@example.com", "ci-team@example.com"},
		"[keyrot] WARNING user deleted: gone": {"security@example.com"},
	}
	for prefix, to := range want {
		var found *sandbox.Email
		for subject, m := range bySubject {
			if strings.HasPrefix(subject, prefix) {
				found = &m
				break
			}
		}
		if found == nil {
			var subjects []string
			for s := range bySubject {
				subjects = append(subjects, s)
			}
			t.Errorf("no email %q among %q", prefix, subjects)
			continue
		}
		if got := strings.Join(found.To, ","); got != strings.Join(to, ",") {
			t.Errorf("%s: to = %s, want %s", prefix, got, strings.Join(to, ","))
		}
		for _, section := range []string{"Event details", "How to get the current key", "curl -H \"X-API-Key: $KEYROT_API_KEY\" https://keyrot.example.com/credentials/",
			"credential_process = keyrot credentials", "secretsmanager get-secret-value", "Security best practices", "Time:"} {
			if !strings.Contains(found.Text, section) {
				t.Errorf("%s: text lacks %q", prefix, section)
			}
		}
		if !strings.Contains(found.HTML, "<html") {
			t.Errorf("%s: no HTML part", prefix)
		}
	}
}
