package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The account-wide reads keyrot observes a fleet with: IAM's credential
// report and GetAccountAuthorizationDetails.

// reportMinAge is IAM's rule: a credential report younger than this is
// returned as is by GenerateCredentialReport, never regenerated; an older
// one has expired and GetCredentialReport refuses it.
const reportMinAge = 4 * time.Hour

// credentialReport is the account's last generated report. Its content is
// the state at the moment generation started; it becomes readable at ready.
type credentialReport struct {
	generated time.Time
	ready     time.Time
	content   []byte
}

// reportColumns are the credential report's columns, in AWS's order.
var reportColumns = []string{
	"user", "arn", "user_creation_time", "password_enabled", "password_last_used",
	"password_last_changed", "password_next_rotation", "mfa_active",
	"access_key_1_active", "access_key_1_last_rotated", "access_key_1_last_used_date",
	"access_key_1_last_used_region", "access_key_1_last_used_service",
	"access_key_2_active", "access_key_2_last_rotated", "access_key_2_last_used_date",
	"access_key_2_last_used_region", "access_key_2_last_used_service",
	"cert_1_active", "cert_1_last_rotated", "cert_2_active", "cert_2_last_rotated",
}

// reportTime is the credential report's ISO 8601 form, e.g. 2014-08-28T21:42:50+00:00.
func reportTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05+00:00") }

type generateReportResult struct {
	State       string `xml:"State"`
	Description string `xml:"Description"`
}

type getReportResult struct {
	Content       string `xml:"Content"`
	ReportFormat  string `xml:"ReportFormat"`
	GeneratedTime string `xml:"GeneratedTime"`
}

// generateCredentialReport starts a report unless one younger than four
// hours exists: STARTED when it starts one, INPROGRESS while it is being
// built, COMPLETE when the last one is ready and young enough.
func (m *iamService) generateCredentialReport(_ principal, _ url.Values) (any, *apiError) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if r := m.report; r != nil && now.Sub(r.generated) < reportMinAge {
		if now.Before(r.ready) {
			return generateReportResult{State: "INPROGRESS", Description: "Report generation in progress"}, nil
		}
		return generateReportResult{State: "COMPLETE", Description: "Report is complete"}, nil
	}
	m.report = &credentialReport{generated: now.UTC().Truncate(time.Second), ready: now.Add(m.reportDelay), content: m.renderReport(now)}
	return generateReportResult{State: "STARTED", Description: "No report exists. Starting a new report generation task"}, nil
}

func (m *iamService) getCredentialReport(_ principal, _ url.Values) (any, *apiError) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := m.clock.Now()
	r := m.report
	switch {
	case r == nil:
		return nil, errorf(http.StatusGone, "ReportNotPresent", "Credential report not present. Use GenerateCredentialReport to generate one.")
	case now.Before(r.ready):
		return nil, errorf(http.StatusNotFound, "ReportInProgress", "Credential report is being generated.")
	case now.Sub(r.generated) >= reportMinAge:
		return nil, errorf(http.StatusGone, "ReportExpired", "Credential report is expired (generated at %s). Use GenerateCredentialReport to generate a new one.", reportTime(r.generated))
	}
	return getReportResult{Content: base64.StdEncoding.EncodeToString(r.content), ReportFormat: "text/csv", GeneratedTime: awsTime(r.generated)}, nil
}

// renderReport writes the CSV as AWS does: a row for the root account, then
// one per user; a user's keys oldest first, at most two; N/A where there is
// nothing to tell. Call with m.mu held.
func (m *iamService) renderReport(now time.Time) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(reportColumns)
	na := "N/A"
	root := []string{"<root_account>", rootARN(m.account), reportTime(time.Unix(0, 0)), "not_supported", na, "not_supported", "not_supported", "false"}
	root = append(root, "false", na, na, na, na, "false", na, na, na, na, "false", na, "false", na)
	_ = w.Write(root)
	for _, name := range m.userOrder {
		u := m.users[name]
		row := []string{u.Name, m.userARN(u), reportTime(u.Created), "false", na, na, na, "false"}
		for i := range 2 {
			if i >= len(u.Keys) {
				row = append(row, "false", na, na, na, na)
				continue
			}
			k := m.keys[u.Keys[i]]
			used, region, service := na, na, na
			if k.LastUsed != nil && !k.LastUsed.After(now) {
				used, region, service = reportTime(*k.LastUsed), k.LastRegion, k.LastService
			}
			row = append(row, strconv.FormatBool(k.Status == "Active"), reportTime(k.Created), used, region, service)
		}
		row = append(row, "false", na, "false", na)
		_ = w.Write(row)
	}
	w.Flush()
	return buf.Bytes()
}

type xmlUserDetail struct {
	Path       string   `xml:"Path"`
	UserName   string   `xml:"UserName"`
	UserID     string   `xml:"UserId"`
	Arn        string   `xml:"Arn"`
	CreateDate string   `xml:"CreateDate"`
	GroupList  []string `xml:"GroupList>member"`
	Tags       []iamTag `xml:"Tags>member,omitempty"`
}

type xmlGroupDetail struct {
	Path       string `xml:"Path"`
	GroupName  string `xml:"GroupName"`
	GroupID    string `xml:"GroupId"`
	Arn        string `xml:"Arn"`
	CreateDate string `xml:"CreateDate"`
}

type authDetailsResult struct {
	UserDetailList  members[xmlUserDetail]  `xml:"UserDetailList"`
	GroupDetailList members[xmlGroupDetail] `xml:"GroupDetailList"`
	RoleDetailList  members[struct{}]       `xml:"RoleDetailList"`
	Policies        members[struct{}]       `xml:"Policies"`
	truncation
}

// getAccountAuthorizationDetails lists users (with tags and groups) and
// groups, as Filter asks (all when empty; roles and policies are always
// empty here), paginated over users then groups.
func (m *iamService) getAccountAuthorizationDetails(_ principal, form url.Values) (any, *apiError) {
	var filter []string
	for i := 1; ; i++ {
		v := form.Get("Filter.member." + strconv.Itoa(i))
		if v == "" {
			break
		}
		switch v {
		case "User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy":
		default:
			return nil, validationError("1 validation error detected: Value '[%s]' at 'filter' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [User, Role, Group, LocalManagedPolicy, AWSManagedPolicy]]", v)
		}
		filter = append(filter, v)
	}
	want := func(kind string) bool { return len(filter) == 0 || slices.Contains(filter, kind) }
	m.mu.RLock()
	defer m.mu.RUnlock()
	// One ordered list of entities: "u/<user>" then "g/<group>".
	var entities []string
	if want("User") {
		for _, n := range m.userOrder {
			entities = append(entities, "u/"+n)
		}
	}
	if want("Group") {
		var groups []string
		for n := range m.groups {
			groups = append(groups, "g/"+n)
		}
		slices.Sort(groups)
		entities = append(entities, groups...)
	}
	page, next, err := paginate(entities, form)
	if err != nil {
		return nil, err
	}
	res := authDetailsResult{truncation: nextPage(next)}
	res.UserDetailList.Member, res.GroupDetailList.Member = []xmlUserDetail{}, []xmlGroupDetail{}
	res.RoleDetailList.Member, res.Policies.Member = []struct{}{}, []struct{}{}
	for _, e := range page {
		if name, ok := strings.CutPrefix(e, "u/"); ok {
			u := m.users[name]
			d := xmlUserDetail{Path: u.Path, UserName: u.Name, UserID: u.ID, Arn: m.userARN(u), CreateDate: awsTime(u.Created), Tags: u.Tags, GroupList: []string{}}
			for _, g := range u.Groups {
				d.GroupList = append(d.GroupList, m.groups[g].Name)
			}
			res.UserDetailList.Member = append(res.UserDetailList.Member, d)
			continue
		}
		g := m.groups[strings.TrimPrefix(e, "g/")]
		res.GroupDetailList.Member = append(res.GroupDetailList.Member, xmlGroupDetail{Path: g.Path, GroupName: g.Name, GroupID: g.ID, Arn: m.groupARN(g), CreateDate: awsTime(g.Created)})
	}
	return res, nil
}
