package fleet

import (
	"time"

	"github.com/keyrot/keyrot"
)

// PassReport is what one reconcile pass did (or, dry, would do): the one
// shape `keyrot rotate -o json` prints and the Lambda returns and logs. It
// names users and key ids, never a secret; error text is redacted.
type PassReport struct {
	DryRun      bool `json:"dry_run"`
	Users       int  `json:"users"`
	Exempt      int  `json:"exempt"`
	Created     int  `json:"created"`
	Deactivated int  `json:"deactivated"`
	Deleted     int  `json:"deleted"`
	Warnings    int  `json:"warnings"`
	Failed      int  `json:"failed"`
	// Deferred counts the users the pass had no time left for; the next
	// pass starts with the most overdue of them.
	Deferred int `json:"deferred"`
	// Bulk counts the users planned from bulk data alone (bulk_observe).
	Bulk int `json:"bulk"`
	// NextAt is when a user next needs attention (RFC 3339, UTC).
	NextAt     string `json:"next_at,omitempty"`
	DurationMs int64  `json:"duration_ms"`
	// Stopped reports that the pass reached its deadline (or was
	// interrupted) and left steps for the next one.
	Stopped bool         `json:"stopped"`
	Results []PassResult `json:"results"`
}

// PassResult is what the pass did for one user.
type PassResult struct {
	User string `json:"user"`
	// CurrentKeyID is the user's current key, as IAM listed it.
	CurrentKeyID string `json:"current_key_id,omitempty"`
	Exempt       string `json:"exempt,omitempty"`
	Missing      bool   `json:"missing,omitempty"`
	// Planned are the steps that were due; Done those carried out.
	Planned []string `json:"planned,omitempty"`
	Done    []string `json:"done,omitempty"`
	// Warnings are "kind: summary".
	Warnings []string `json:"warnings,omitempty"`
	Next     string   `json:"next,omitempty"`
	NextAt   string   `json:"next_at,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// NewPassReport reports sum, the outcome of a pass that took d; stopped
// says it ended early.
func NewPassReport(sum keyrot.Summary, dryRun bool, d time.Duration, stopped bool) PassReport {
	r := PassReport{
		DryRun: dryRun, Users: sum.Users, Exempt: sum.Exempt, Created: sum.Created, Deactivated: sum.Deactivated,
		Deleted: sum.Deleted, Warnings: sum.Warnings, Failed: sum.Failed, Deferred: sum.Deferred, Bulk: sum.Bulk,
		NextAt: rfc3339(sum.NextAt), DurationMs: d.Milliseconds(), Stopped: stopped, Results: []PassResult{},
	}
	for _, res := range sum.Results {
		u := PassResult{User: res.User, Exempt: res.ExemptReason, Missing: res.Missing, Next: res.Next, NextAt: rfc3339(res.NextAt)}
		if res.Current != nil {
			u.CurrentKeyID = res.Current.ID
		}
		for _, s := range res.Planned {
			u.Planned = append(u.Planned, StepText(s))
		}
		for _, s := range res.Done {
			u.Done = append(u.Done, StepText(s))
		}
		for _, w := range res.Warnings {
			u.Warnings = append(u.Warnings, string(w.Warning)+": "+keyrot.RedactSecrets(w.Summary))
		}
		if res.Err != nil {
			u.Error = keyrot.RedactSecrets(res.Err.Error())
		}
		r.Results = append(r.Results, u)
	}
	return r
}

// Failures are the results of the users the pass could not bring up to date.
func (r PassReport) Failures() []PassResult {
	var failed []PassResult
	for _, u := range r.Results {
		if u.Error != "" {
			failed = append(failed, u)
		}
	}
	return failed
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
