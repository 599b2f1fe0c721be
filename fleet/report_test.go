package fleet_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func ago(d time.Duration) time.Time { return t0.Add(-d) }

// fixture is a fleet with one user in each situation a report must tell
// apart.
func fixture() fleet.Snapshot {
	return fleet.Snapshot{At: t0, Policy: keyrot.DefaultPolicy(), Users: []fleet.User{
		{Name: "alice", Keys: []fleet.Key{
			{ID: "AKIAALICECURRENT0001", Status: keyrot.KeyActive, Role: fleet.RoleCurrent, Created: ago(10 * day), CurrentSince: ago(10 * day), LastUsed: ago(time.Hour)},
			{ID: "AKIAALICEPREVIOUS001", Status: keyrot.KeyInactive, Role: fleet.RolePrevious, Created: ago(100 * day), InactiveSince: ago(3 * day), DeleteAt: t0.Add(4 * day), LastUsed: ago(9 * day)},
		}},
		{Name: "bob", Keys: []fleet.Key{
			{ID: "AKIABOBCURRENT000001", Status: keyrot.KeyActive, Role: fleet.RoleCurrent, Created: ago(120 * day), LastUsed: ago(50 * day)},
		}, Warnings: []fleet.Warning{{Kind: keyrot.WarnKeyLimit, Summary: "stuck"}}},
		{Name: "carol", Exempt: "tagged keyrot:exempt", Keys: []fleet.Key{
			{ID: "AKIACAROL00000000001", Status: keyrot.KeyActive, Role: fleet.RoleExempt, Created: ago(200 * day), LastUsed: ago(2 * time.Hour)},
			{ID: "AKIACAROL00000000002", Status: keyrot.KeyInactive, Role: fleet.RoleExempt, Created: ago(300 * day)},
		}},
		{Name: "dave", Missing: true, Error: "IAM user not found"},
		{Name: "erin", Keys: []fleet.Key{
			{ID: "AKIAERINCURRENT00001", Status: keyrot.KeyActive, Role: fleet.RoleCurrent, Created: ago(46 * day)},
		}},
		{Name: "frank|pipe"},
	}}
}

func TestReportGolden(t *testing.T) {
	r := fleet.NewReport(fixture(), fleet.DefaultRules())
	for _, format := range fleet.Formats {
		t.Run(format, func(t *testing.T) {
			var b bytes.Buffer
			if err := r.Write(&b, format); err != nil {
				t.Fatal(err)
			}
			testkit.Golden(t, "report."+format+".golden", b.String(), *update, "go test ./fleet -run Golden -update")
		})
	}
}

func TestReportFindings(t *testing.T) {
	r := fleet.NewReport(fixture(), fleet.DefaultRules())
	got := map[string]string{}
	for _, u := range r.Users {
		var kinds []string
		for _, f := range u.Findings {
			kinds = append(kinds, string(f.Kind))
		}
		got[u.User] = strings.Join(kinds, ",")
		if u.Compliant != (len(u.Findings) == 0) {
			t.Errorf("%s: compliant = %v with %d findings", u.User, u.Compliant, len(u.Findings))
		}
	}
	want := map[string]string{
		"alice":      "",                     // inactive key on its way out, with a deletion planned
		"bob":        "key_age,unused_key",   // 120 days old, unused for 50
		"carol":      "key_age,inactive_key", // exempt does not mean compliant
		"dave":       "unknown",              // cannot be shown to be in policy
		"erin":       "unused_key",           // never used, created 46 days ago
		"frank|pipe": "",                     // no keys at all
	}
	for user, w := range want {
		if got[user] != w {
			t.Errorf("%s findings = %q, want %q", user, got[user], w)
		}
	}
	s := r.Summary
	if s.Users != 6 || s.Exempt != 1 || s.InPolicy != 2 || s.OutOfPolicy != 4 || s.KeysTooOld != 2 || s.UnusedKeys != 2 || s.InactiveKeys != 1 || s.Unobserved != 1 {
		t.Errorf("summary = %+v", s)
	}
}

func TestReportRules(t *testing.T) {
	r := fleet.NewReport(fixture(), fleet.Rules{MaxKeyAge: 365 * day, MaxUnused: 365 * day})
	if got, want := r.Summary.OutOfPolicy, 2; got != want { // carol's inactive key, dave unobserved
		t.Errorf("out of policy with a 365-day rule = %d, want %d: %s", got, want, r.SummaryLine())
	}
	for _, bad := range []fleet.Rules{{MaxKeyAge: 0, MaxUnused: day}, {MaxKeyAge: day, MaxUnused: -day}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

func TestReportMachineFormatsParse(t *testing.T) {
	r := fleet.NewReport(fixture(), fleet.DefaultRules())
	var b bytes.Buffer
	if err := r.Write(&b, fleet.FormatCSV); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatalf("csv does not parse: %v", err)
	}
	if got, want := len(recs), 1+len(r.Users); got != want {
		t.Errorf("csv has %d records, want %d (a header and one per user)", got, want)
	}
	b.Reset()
	if err := r.Write(&b, fleet.FormatJSON); err != nil {
		t.Fatal(err)
	}
	var back fleet.Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("json does not parse: %v", err)
	}
	if back.Summary != r.Summary || len(back.Users) != len(r.Users) {
		t.Errorf("json round trip lost data: %+v", back.Summary)
	}
	if err := r.Write(&b, "yaml"); err == nil || !strings.Contains(err.Error(), "table, csv, json, markdown") {
		t.Errorf("unknown format error = %v, want one naming the formats", err)
	}
}

func TestFormatAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		40 * time.Second:                        "40s",
		4*time.Minute + 10*time.Second:          "4m10s",
		5*time.Hour + 12*time.Minute:            "5h12m",
		26*time.Hour + 5*time.Minute:            "26h",
		93*day + 4*time.Hour:                    "93d",
		-(2*time.Minute + 500*time.Millisecond): "-2m00s",
	} {
		if got := fleet.FormatAge(d); got != want {
			t.Errorf("FormatAge(%s) = %q, want %q", d, got, want)
		}
	}
}
