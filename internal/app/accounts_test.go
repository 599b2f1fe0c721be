package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestAccountRoleMissingReportedOnce runs passes across the sandbox's
// Organization with one member's role deleted: the other members rotate
// every pass, the failing account is emailed about once for two passes,
// named in the email and the log, and once more when it recovers; every
// email goes out from the management account.
func TestAccountRoleMissingReportedOnce(t *testing.T) {
	clock := newClock()
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clock, MemberAccounts: 3})
	admin := sandboxtest.Config(t, sb)
	ctx := context.Background()
	var mgmt string
	var members []string
	for _, a := range sb.Accounts() {
		if a.Management {
			mgmt = a.ID
		} else {
			members = append(members, a.ID)
		}
	}
	for _, id := range members {
		if _, err := awsiam.NewFromConfig(sandboxtest.MemberConfig(t, sb, id, "")).CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
			t.Fatal(err)
		}
	}
	failing := members[1]
	if err := sb.DeleteMemberRole(failing); err != nil {
		t.Fatal(err)
	}

	h := &harness{t: t, unit: time.Minute}
	cfg := h.config("ci-bot")
	cfg.Notify.Via, cfg.Notify.Sender, cfg.Notify.Admin, cfg.Notify.SendRate = "ses", "keyrot@example.com", "security@example.com", 1000
	cfg.Accounts.Organization = true
	var logs testkit.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	m, err := app.NewAccounts(ctx, cfg, app.Options{AWS: &admin, Clock: clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pass := func() app.AccountsSummary {
		t.Helper()
		sum, err := m.ReconcileAll(ctx, keyrot.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(sum.Accounts) != 3 {
			t.Fatalf("pass over %d accounts, want the 3 members (not the management account)", len(sum.Accounts))
		}
		clock.Advance(time.Minute)
		return sum
	}
	for range 2 {
		sum := pass()
		for _, r := range sum.Accounts {
			if (r.Err != nil) != (r.Account.ID == failing) {
				t.Errorf("account %s: err = %v", r.Account.ID, r.Err)
			}
		}
	}
	if err := sb.SetMemberRole(failing, sandbox.MemberRole{}); err != nil {
		t.Fatal(err)
	}
	if accounts, users, _ := pass().Failed(); accounts != 0 || users != 0 {
		t.Fatalf("after the role is back: %d accounts, %d users failed", accounts, users)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Close(cctx); err != nil {
		t.Fatal(err)
	}

	count := map[string]int{}
	for _, e := range sb.Outbox() {
		count[e.Subject]++
		if e.Account != mgmt {
			t.Errorf("email %q sent from account %s, want the management account %s", e.Subject, e.Account, mgmt)
		}
	}
	if got := count["[keyrot] FAILED rotation: account "+failing]; got != 1 {
		t.Errorf("%d failure emails about account %s for one incident over two passes, want 1; outbox: %v", got, failing, count)
	}
	if got := count["[keyrot] RECOVERED rotation: account "+failing]; got != 1 {
		t.Errorf("%d recovery emails, want 1; outbox: %v", got, count)
	}
	for _, id := range members {
		found := false
		for subject := range count {
			found = found || strings.HasPrefix(subject, "[keyrot] key created: ci-bot ") && strings.HasSuffix(subject, "(account "+id+")")
		}
		if !found {
			t.Errorf("no key-created email naming account %s: %v", id, count)
		}
		secrets, err := awssm.NewFromConfig(sandboxtest.MemberConfig(t, sb, id, "")).ListSecrets(ctx, &awssm.ListSecretsInput{})
		if err != nil || len(secrets.SecretList) == 0 {
			t.Errorf("account %s: secrets %v, %v", id, secrets, err)
		}
	}
	if got := bytes.Count(logs.Bytes(), []byte(`"msg":"account failed","account":"`+failing+`"`)); got != 1 {
		t.Errorf("account failure logged at error %d times, want once:\n%s", got, logs.String())
	}
	if sm, err := awssm.NewFromConfig(admin).ListSecrets(ctx, &awssm.ListSecretsInput{}); err != nil || len(sm.SecretList) != 0 {
		t.Errorf("management account secrets: %v, %v; want none", sm, err)
	}
}

// TestAccountsExternalID: with the member roles requiring an ExternalId,
// keyrot passes the configured one; a wrong one is the account's failure.
func TestAccountsExternalID(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{MemberAccounts: 1, MemberExternalID: "keyrot-ext-7"})
	admin := sandboxtest.Config(t, sb)
	member := sb.Accounts()[1].ID
	if _, err := awsiam.NewFromConfig(sandboxtest.MemberConfig(t, sb, member, "keyrot-ext-7")).CreateUser(t.Context(), &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, unit: time.Minute}
	for _, tc := range []struct {
		externalID string
		ok         bool
	}{{"wrong-ext", false}, {"keyrot-ext-7", true}} {
		cfg := h.config("ci-bot")
		cfg.Accounts.IDs, cfg.Accounts.ExternalID = []string{member}, tc.externalID
		m, err := app.NewAccounts(t.Context(), cfg, app.Options{AWS: &admin})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := m.ReconcileAll(t.Context(), keyrot.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := sum.Accounts[0].Err == nil && sum.Accounts[0].Summary.Created == 1; got != tc.ok {
			t.Errorf("external id %q: rotated %v, want %v (%v)", tc.externalID, got, tc.ok, sum.Accounts[0].Err)
		}
		if err := m.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
