package metrics_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keyrot/keyrot/metrics"
)

func TestWatchAccounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	failing := []string{}
	if err := m.WatchAccounts(func() []string { return failing }); err != nil {
		t.Fatal(err)
	}
	// Healthy: a zero count and no per-account series.
	if err := testutil.GatherAndCompare(reg, strings.NewReader("# HELP keyrot_accounts_failing How many accounts keyrot cannot work in (its role missing, access denied, throttled).\n# TYPE keyrot_accounts_failing gauge\nkeyrot_accounts_failing 0\n"),
		"keyrot_accounts_failing", "keyrot_account_failing"); err != nil {
		t.Error(err)
	}
	failing = []string{"100000000002"}
	want := `# HELP keyrot_account_failing 1 for each account keyrot cannot work in now.
# TYPE keyrot_account_failing gauge
keyrot_account_failing{account="100000000002"} 1
# HELP keyrot_accounts_failing How many accounts keyrot cannot work in (its role missing, access denied, throttled).
# TYPE keyrot_accounts_failing gauge
keyrot_accounts_failing 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keyrot_accounts_failing", "keyrot_account_failing"); err != nil {
		t.Error(err)
	}
	// An unauthenticated scrape sees the count, not the accounts.
	families, err := metrics.Public(reg).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "keyrot_account_failing" && len(f.GetMetric()) > 0 {
			t.Errorf("the public scrape names the failing accounts")
		}
	}
}
