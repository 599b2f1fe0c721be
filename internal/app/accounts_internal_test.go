package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/mock"
)

// fakeAccounts is the multi-account engine with each account's pass
// replaced by fail: an account named there fails with its error.
func fakeAccounts(t *testing.T, ids []string, fail map[string]error) (*Accounts, *mock.Notifier, *mock.Clock) {
	t.Helper()
	cfg := config.Default()
	cfg.Users.Names, cfg.Notify.Via = []string{"ci-bot"}, "log"
	cfg.Accounts.IDs = ids
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := &mock.Notifier{}
	clock := mock.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	awsCfg := aws.Config{Region: "eu-west-1"}
	m, err := NewAccounts(t.Context(), cfg, Options{Notifier: n, Clock: clock, AWS: &awsCfg})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	m.pass = func(_ context.Context, a Account, _ keyrot.RunOptions) (keyrot.Summary, error) {
		mu.Lock()
		defer mu.Unlock()
		if err := fail[a.ID]; err != nil {
			return keyrot.Summary{}, err
		}
		return keyrot.Summary{Users: 1, Created: 1}, nil
	}
	return m, n, clock
}

func TestAccountFailureReportedOncePerIncident(t *testing.T) {
	roleMissing := errors.New("sts: AssumeRole: AccessDenied: not authorized to perform sts:AssumeRole on arn:aws:iam::100000000002:role/keyrot-member")
	fail := map[string]error{"100000000002": roleMissing}
	m, n, clock := fakeAccounts(t, []string{"100000000001", "100000000002", "100000000003"}, fail)
	for pass := range 2 {
		sum, err := m.ReconcileAll(t.Context(), keyrot.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		accounts, users, of := sum.Failed()
		if accounts != 1 || users != 0 || of != 2 {
			t.Fatalf("pass %d: failed = %d accounts, %d of %d users; want the one account, the other two rotated", pass, accounts, users, of)
		}
		clock.Advance(time.Minute)
	}
	if got := n.Count(keyrot.EventRotationFailed); got != 1 {
		t.Fatalf("two failing passes sent %d failure events, want 1", got)
	}
	e := n.Events()[0]
	if e.Account != "100000000002" || e.User != "" || !strings.Contains(e.Err, "AccessDenied") {
		t.Errorf("event = %+v, want the account, no user, the error", e)
	}
	if got := m.Failing(); len(got) != 1 || got[0] != "100000000002" {
		t.Errorf("failing = %v", got)
	}

	delete(fail, "100000000002")
	if _, err := m.ReconcileAll(t.Context(), keyrot.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := n.Count(keyrot.EventRotationRecovered); got != 1 {
		t.Fatalf("recovered events = %d, want 1", got)
	}
	if len(m.Failing()) != 0 {
		t.Errorf("still failing: %v", m.Failing())
	}
	// A new incident is told again.
	fail["100000000002"] = roleMissing
	if _, err := m.ReconcileAll(t.Context(), keyrot.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := n.Count(keyrot.EventRotationFailed); got != 2 {
		t.Fatalf("failure events after a second incident = %d, want 2", got)
	}
}

func TestAccountThrottlingIsAnIncidentOnlyWhenItLasts(t *testing.T) {
	fail := map[string]error{"100000000001": &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}}
	m, n, _ := fakeAccounts(t, []string{"100000000001"}, fail)
	for pass := 1; pass <= accountThrottledThreshold; pass++ {
		if _, err := m.ReconcileAll(t.Context(), keyrot.RunOptions{}); err != nil {
			t.Fatal(err)
		}
		want := 0
		if pass == accountThrottledThreshold {
			want = 1
		}
		if got := n.Count(keyrot.EventRotationFailed); got != want {
			t.Fatalf("after %d throttled passes: %d failure events, want %d", pass, got, want)
		}
	}
}

func TestAccountFailureNeverCarriesASecret(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	m, n, _ := fakeAccounts(t, []string{"100000000001"}, map[string]error{"100000000001": errors.New("boom " + secret)})
	if _, err := m.ReconcileAll(t.Context(), keyrot.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range n.Events() {
		if strings.Contains(e.Err+e.Summary, secret) {
			t.Fatalf("event carries the secret: %+v", e)
		}
	}
}

func TestRoleARNPartition(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-1":     "arn:aws:iam::100000000001:role/keyrot-member",
		"cn-north-1":    "arn:aws-cn:iam::100000000001:role/keyrot-member",
		"us-gov-west-1": "arn:aws-us-gov:iam::100000000001:role/keyrot-member",
	} {
		m, _, _ := fakeAccounts(t, []string{"100000000001"}, nil)
		m.base.Region = region
		if got := m.roleARN("100000000001"); got != want {
			t.Errorf("%s: %s, want %s", region, got, want)
		}
	}
}
