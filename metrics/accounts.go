package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// LabelAccount names the AWS account a series is about. Account ids are
// not secret, but they map an organization: Public leaves these series out
// of unauthenticated scrapes, like the per-user ones.
const LabelAccount = "account"

// WatchAccounts registers, for keyrot across accounts,
// keyrot_accounts_failing: how many accounts keyrot cannot work in now
// (an alert any scrape can see), and keyrot_account_failing{account}: 1 for
// each of those accounts. Healthy accounts have no series, so a large
// organization adds none; per-user series are not split by account.
// failing is read at scrape time.
func (m *Metrics) WatchAccounts(failing func() []string) error {
	if m == nil {
		return nil
	}
	count := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyrot_accounts_failing",
		Help: "How many accounts keyrot cannot work in (its role missing, access denied, throttled).",
	}, func() float64 { return float64(len(failing())) })
	if err := m.reg.Register(count); err != nil {
		return fmt.Errorf("metrics: register failing accounts: %w", err)
	}
	return m.registerGauges("keyrot_account_failing", "1 for each account keyrot cannot work in now.", LabelAccount, func(add func(string, float64)) {
		for _, id := range failing() {
			add(id, 1)
		}
	})
}
