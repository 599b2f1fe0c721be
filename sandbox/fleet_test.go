package sandbox_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// The credential report through the SDK: ReportNotPresent, STARTED, in
// progress on the driven clock, COMPLETE with AWS's CSV, no regeneration
// within four hours, ReportExpired after them.
func TestCredentialReport(t *testing.T) {
	ctx := context.Background()
	clock := sandboxtest.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := sandboxtest.Start(t, sandbox.Options{Clock: clock, CredentialReportDelay: 10 * time.Second})
	c := iam.NewFromConfig(sandboxtest.Config(t, s))

	_, err := c.GetCredentialReport(ctx, &iam.GetCredentialReportInput{})
	expectCode(t, err, "ReportNotPresent")
	if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("alice")}); err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("alice")})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if _, err := c.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("alice"), AccessKeyId: key.AccessKey.AccessKeyId, Status: iamtypes.StatusTypeInactive}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("alice")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("bob")}); err != nil {
		t.Fatal(err)
	}

	gen := func(want iamtypes.ReportStateType) {
		t.Helper()
		out, err := c.GenerateCredentialReport(ctx, &iam.GenerateCredentialReportInput{})
		if err != nil || out.State != want {
			t.Fatalf("GenerateCredentialReport = %v, %v; want %s", out, err, want)
		}
	}
	gen(iamtypes.ReportStateTypeStarted)
	generated := clock.Now()
	gen(iamtypes.ReportStateTypeInprogress)
	_, err = c.GetCredentialReport(ctx, &iam.GetCredentialReportInput{})
	expectCode(t, err, "ReportInProgress")
	clock.Advance(10 * time.Second)
	gen(iamtypes.ReportStateTypeComplete)
	out, err := c.GetCredentialReport(ctx, &iam.GetCredentialReportInput{})
	if err != nil {
		t.Fatal(err)
	}
	if out.ReportFormat != iamtypes.ReportFormatTypeTextCsv || !aws.ToTime(out.GeneratedTime).Equal(generated) {
		t.Fatalf("format %q generated %v, want text/csv at %v", out.ReportFormat, out.GeneratedTime, generated)
	}
	rows, err := csv.NewReader(strings.NewReader(string(out.Content))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := strings.Join(rows[0], ",")
	if header != "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,"+
		"access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"+
		"access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,"+
		"cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated" {
		t.Fatalf("header %s", header)
	}
	if len(rows) != 4 || rows[1][0] != "<root_account>" || rows[2][0] != "alice" || rows[3][0] != "bob" {
		t.Fatalf("rows %v", rows)
	}
	alice := strings.Join(rows[2][8:18], ",")
	if want := "false,2026-01-02T03:04:05+00:00,N/A,N/A,N/A,true,2026-01-02T03:05:05+00:00,N/A,N/A,N/A"; alice != want {
		t.Fatalf("alice's keys: %s, want %s", alice, want)
	}
	if bob := strings.Join(rows[3][8:18], ","); bob != "false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A" {
		t.Fatalf("bob's keys: %s", bob)
	}

	// Within four hours the report is kept, not regenerated.
	clock.Advance(3 * time.Hour)
	gen(iamtypes.ReportStateTypeComplete)
	clock.Advance(time.Hour)
	_, err = c.GetCredentialReport(ctx, &iam.GetCredentialReportInput{})
	expectCode(t, err, "ReportExpired")
	gen(iamtypes.ReportStateTypeStarted)
}

// GetAccountAuthorizationDetails with Filter User pages through users with
// their tags and groups; the call counter counts it, over HTTP.
func TestAccountAuthorizationDetailsAndCalls(t *testing.T) {
	ctx := context.Background()
	s := sandboxtest.Start(t, sandbox.Options{})
	c := iam.NewFromConfig(sandboxtest.Config(t, s))
	if _, err := c.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String("Exempt")}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := fmt.Sprintf("u%d", i)
		if _, err := c.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name), Tags: []iamtypes.Tag{{Key: aws.String("team"), Value: aws.String(name)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String("Exempt"), UserName: aws.String("u3")}); err != nil {
		t.Fatal(err)
	}
	s.ResetCalls()
	var users []iamtypes.UserDetail
	p := iam.NewGetAccountAuthorizationDetailsPaginator(c, &iam.GetAccountAuthorizationDetailsInput{Filter: []iamtypes.EntityType{iamtypes.EntityTypeUser}, MaxItems: aws.Int32(2)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.GroupDetailList) != 0 {
			t.Fatalf("groups with Filter User: %v", out.GroupDetailList)
		}
		users = append(users, out.UserDetailList...)
	}
	if len(users) != 5 {
		t.Fatalf("%d users, want 5", len(users))
	}
	for i, u := range users {
		if aws.ToString(u.UserName) != fmt.Sprintf("u%d", i) || len(u.Tags) != 1 || aws.ToString(u.Tags[0].Value) != aws.ToString(u.UserName) {
			t.Fatalf("user %d: %+v", i, u)
		}
		if wantGroup := i == 3; wantGroup != (len(u.GroupList) == 1 && u.GroupList[0] == "Exempt") {
			t.Fatalf("user %d groups %v", i, u.GroupList)
		}
	}
	_, err := c.GetAccountAuthorizationDetails(ctx, &iam.GetAccountAuthorizationDetailsInput{Filter: []iamtypes.EntityType{"Nope"}})
	expectCode(t, err, "ValidationError")

	resp, err := http.Get(s.URL() + "/_sandbox/calls")
	if err != nil {
		t.Fatal(err)
	}
	var calls map[string]int64
	err = json.NewDecoder(resp.Body).Decode(&calls)
	resp.Body.Close()
	if err != nil || calls["iam:GetAccountAuthorizationDetails"] != 4 || len(calls) != 1 {
		t.Fatalf("calls = %v, %v; want 4 GetAccountAuthorizationDetails (3 pages and the refused one)", calls, err)
	}
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/_sandbox/calls", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /_sandbox/calls: %v %v", resp, err)
	}
	if got := s.Calls(); len(got) != 0 {
		t.Fatalf("calls after reset: %v", got)
	}
}
