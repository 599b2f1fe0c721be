package fleet

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report formats.
const (
	FormatTable    = "table"
	FormatCSV      = "csv"
	FormatJSON     = "json"
	FormatMarkdown = "markdown"
)

// Formats are the formats Report.Write accepts.
var Formats = []string{FormatTable, FormatCSV, FormatJSON, FormatMarkdown}

// Report is the compliance report: one row per managed or exempt user.
type Report struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Rules       ReportRules   `json:"rules"`
	Users       []ReportUser  `json:"users"`
	Summary     ReportSummary `json:"summary"`
	rules       Rules
}

// ReportRules are the rules the report checked, for its reader.
type ReportRules struct {
	MaxKeyAgeDays float64 `json:"max_key_age_days"`
	MaxUnusedDays float64 `json:"max_unused_days"`
}

// ReportUser is one user's row.
type ReportUser struct {
	User string `json:"user"`
	// Keyrot is "managed", "exempt: <reason>" or "missing".
	Keyrot    string      `json:"keyrot"`
	Keys      []ReportKey `json:"keys"`
	Compliant bool        `json:"compliant"`
	Findings  []Finding   `json:"findings,omitempty"`
}

// ReportKey is one key in a row.
type ReportKey struct {
	ID      string    `json:"id"`
	Role    KeyRole   `json:"role"`
	Status  string    `json:"status"`
	Created time.Time `json:"created"`
	AgeDays float64   `json:"age_days"`
	// LastUsed is zero when the key was never used.
	LastUsed time.Time `json:"last_used,omitzero"`
	age      time.Duration
	idle     time.Duration
}

// ReportSummary counts the rows and the findings.
type ReportSummary struct {
	Users        int `json:"users"`
	Exempt       int `json:"exempt"`
	InPolicy     int `json:"in_policy"`
	OutOfPolicy  int `json:"out_of_policy"`
	KeysTooOld   int `json:"keys_too_old"`
	UnusedKeys   int `json:"unused_keys"`
	InactiveKeys int `json:"inactive_keys"`
	Unobserved   int `json:"unobserved"`
}

func days(d time.Duration) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(d.Hours()/24, 'f', 1, 64), 64)
	return v
}

// NewReport checks every user of s against rules.
func NewReport(s Snapshot, rules Rules) Report {
	r := Report{rules: rules, GeneratedAt: s.At.UTC(), Rules: ReportRules{MaxKeyAgeDays: days(rules.MaxKeyAge), MaxUnusedDays: days(rules.MaxUnused)}, Users: []ReportUser{}}
	for _, u := range s.Users {
		row := ReportUser{User: u.Name, Keyrot: "managed", Keys: []ReportKey{}}
		switch {
		case u.Exempt != "":
			row.Keyrot = "exempt: " + u.Exempt
			r.Summary.Exempt++
		case u.Missing:
			row.Keyrot = "missing"
		}
		for _, k := range u.Keys {
			rk := ReportKey{ID: k.ID, Role: k.Role, Status: string(k.Status), Created: k.Created.UTC(), age: k.Age(s.At), AgeDays: days(k.Age(s.At))}
			if !k.LastUsed.IsZero() {
				rk.LastUsed, rk.idle = k.LastUsed.UTC(), s.At.Sub(k.LastUsed)
			}
			row.Keys = append(row.Keys, rk)
		}
		row.Findings = rules.Check(u, s.At)
		row.Compliant = len(row.Findings) == 0
		if row.Compliant {
			r.Summary.InPolicy++
		} else {
			r.Summary.OutOfPolicy++
		}
		for _, f := range row.Findings {
			switch f.Kind {
			case FindingKeyAge:
				r.Summary.KeysTooOld++
			case FindingUnused:
				r.Summary.UnusedKeys++
			case FindingInactive:
				r.Summary.InactiveKeys++
			case FindingUnknown:
				r.Summary.Unobserved++
			}
		}
		r.Users = append(r.Users, row)
	}
	r.Summary.Users = len(r.Users)
	return r
}

// SummaryLine says in one line how many users are out of policy and why.
func (r Report) SummaryLine() string {
	s := r.Summary
	return fmt.Sprintf("%d users (%d exempt): %d in policy, %d out of policy (keys older than %s: %d, active keys unused for %s: %d, inactive keys kept: %d, users not observed: %d)",
		s.Users, s.Exempt, s.InPolicy, s.OutOfPolicy, FormatAge(r.rules.MaxKeyAge), s.KeysTooOld,
		FormatAge(r.rules.MaxUnused), s.UnusedKeys, s.InactiveKeys, s.Unobserved)
}

// Write renders the report in format (FormatTable, FormatCSV, FormatJSON
// or FormatMarkdown).
func (r Report) Write(w io.Writer, format string) error {
	var err error
	switch format {
	case FormatTable:
		err = r.writeTable(w)
	case FormatCSV:
		err = r.writeCSV(w)
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	case FormatMarkdown:
		err = r.writeMarkdown(w)
	default:
		return fmt.Errorf("fleet: report format %q: want one of %s", format, strings.Join(Formats, ", "))
	}
	if err != nil {
		return fmt.Errorf("fleet: write %s report: %w", format, err)
	}
	return nil
}

// keyCells are a row's two key slots (IAM allows two keys per user):
// "id (role, status)", age, last used.
func (u ReportUser) keyCells() []string {
	var cells []string
	for i := range 2 {
		if i >= len(u.Keys) {
			cells = append(cells, "-", "-", "-")
			continue
		}
		k := u.Keys[i]
		id := k.ID + " (" + string(k.Role)
		if k.Status != "Active" {
			id += ", " + strings.ToLower(k.Status)
		}
		lastUsed := "never"
		if !k.LastUsed.IsZero() {
			lastUsed = FormatAge(k.idle) + " ago"
		}
		cells = append(cells, id+")", FormatAge(k.age), lastUsed)
	}
	return cells
}

func (u ReportUser) policy() string {
	if u.Compliant {
		return "ok"
	}
	return "OUT"
}

func (u ReportUser) findingKinds() string {
	var s []string
	for _, f := range u.Findings {
		s = append(s, strings.TrimSpace(string(f.Kind)+" "+f.KeyID))
	}
	return strings.Join(s, ", ")
}

func (u ReportUser) findingDetails() string {
	var s []string
	for _, f := range u.Findings {
		s = append(s, f.Detail)
	}
	return strings.Join(s, "; ")
}

func (r Report) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tKEYROT\tKEY 1\tAGE\tLAST USED\tKEY 2\tAGE\tLAST USED\tPOLICY\tFINDINGS")
	for _, u := range r.Users {
		cells := append([]string{u.User, u.Keyrot}, u.keyCells()...)
		cells = append(cells, u.policy(), dash(u.findingKinds()))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.SummaryLine())
	return err
}

func (r Report) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	header := []string{"user", "keyrot"}
	for i := 1; i <= 2; i++ {
		p := "key" + strconv.Itoa(i) + "_"
		header = append(header, p+"id", p+"role", p+"status", p+"created", p+"age_days", p+"last_used")
	}
	header = append(header, "compliant", "findings")
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, u := range r.Users {
		rec := []string{u.User, u.Keyrot}
		for i := range 2 {
			if i >= len(u.Keys) {
				rec = append(rec, "", "", "", "", "", "")
				continue
			}
			k := u.Keys[i]
			lastUsed := ""
			if !k.LastUsed.IsZero() {
				lastUsed = k.LastUsed.Format(time.RFC3339)
			}
			rec = append(rec, k.ID, string(k.Role), k.Status, k.Created.Format(time.RFC3339), strconv.FormatFloat(k.AgeDays, 'f', 1, 64), lastUsed)
		}
		rec = append(rec, strconv.FormatBool(u.Compliant), u.findingDetails())
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func (r Report) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Access key report\n\nGenerated %s. Rules: active keys at most %s old; active keys used within %s; no inactive key left undeleted.\n\n",
		r.GeneratedAt.Format(time.RFC3339), FormatAge(r.rules.MaxKeyAge), FormatAge(r.rules.MaxUnused))
	b.WriteString("| User | keyrot | Key 1 | Age | Last used | Key 2 | Age | Last used | Policy | Findings |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, u := range r.Users {
		cells := append([]string{u.User, u.Keyrot}, u.keyCells()...)
		cells = append(cells, u.policy(), u.findingDetails())
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	b.WriteString("\n" + r.SummaryLine() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
