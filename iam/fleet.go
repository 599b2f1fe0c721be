package iam

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot"
)

// accountPage is the most users GetAccountAuthorizationDetails returns a call.
const accountPage = 1000

// AccountUsers lists every IAM user with its tags and groups, 1,000 a call
// (GetAccountAuthorizationDetails with Filter User).
func (m *KeyManager) AccountUsers(ctx context.Context) ([]keyrot.AccountUser, error) {
	var users []keyrot.AccountUser
	p := iam.NewGetAccountAuthorizationDetailsPaginator(m.api, &iam.GetAccountAuthorizationDetailsInput{
		Filter: []types.EntityType{types.EntityTypeUser}, MaxItems: aws.Int32(accountPage),
	})
	for p.HasMorePages() {
		if err := m.wait(ctx); err != nil {
			return nil, err
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("iam: get account authorization details: %w", err)
		}
		for _, d := range out.UserDetailList {
			u := keyrot.AccountUser{User: keyrot.User{Name: aws.ToString(d.UserName), ARN: aws.ToString(d.Arn), Path: aws.ToString(d.Path), Tags: make(map[string]string, len(d.Tags))}, Groups: d.GroupList}
			for _, t := range d.Tags {
				u.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			users = append(users, u)
		}
	}
	return users, nil
}

// GenerateCredentialReport asks IAM for a credential report; complete is
// true when the newest report is ready (IAM keeps one younger than four
// hours rather than start another).
func (m *KeyManager) GenerateCredentialReport(ctx context.Context) (bool, error) {
	if err := m.wait(ctx); err != nil {
		return false, err
	}
	out, err := m.api.GenerateCredentialReport(ctx, &iam.GenerateCredentialReportInput{})
	if err != nil {
		return false, fmt.Errorf("iam: generate credential report: %w", err)
	}
	return out.State == types.ReportStateTypeComplete, nil
}

// CredentialReport reads and parses the account's credential report. No
// report, an expired one or one still being generated is keyrot.ErrNoReport.
func (m *KeyManager) CredentialReport(ctx context.Context) (keyrot.CredentialReport, error) {
	if err := m.wait(ctx); err != nil {
		return keyrot.CredentialReport{}, err
	}
	out, err := m.api.GetCredentialReport(ctx, &iam.GetCredentialReportInput{})
	if err != nil {
		var notPresent *types.CredentialReportNotPresentException
		var expired *types.CredentialReportExpiredException
		var notReady *types.CredentialReportNotReadyException
		if errors.As(err, &notPresent) || errors.As(err, &expired) || errors.As(err, &notReady) {
			return keyrot.CredentialReport{}, fmt.Errorf("iam: get credential report: %w (%w)", keyrot.ErrNoReport, err)
		}
		return keyrot.CredentialReport{}, fmt.Errorf("iam: get credential report: %w", err)
	}
	if f := out.ReportFormat; f != "" && f != types.ReportFormatTypeTextCsv {
		return keyrot.CredentialReport{}, fmt.Errorf("iam: credential report in format %q, want text/csv", f)
	}
	rep, err := ParseCredentialReport(out.Content)
	if err != nil {
		return keyrot.CredentialReport{}, err
	}
	rep.Generated = aws.ToTime(out.GeneratedTime)
	return rep, nil
}

// ParseCredentialReport reads the credential report's CSV (columns found by
// name in the header, as AWS may add some): each user's access keys, oldest
// first. A key slot whose last_rotated is N/A holds no key. The root
// account's row is left out.
func ParseCredentialReport(content []byte) (keyrot.CredentialReport, error) {
	rep := keyrot.CredentialReport{Users: map[string][]keyrot.ReportedKey{}}
	r := csv.NewReader(bytes.NewReader(content))
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return rep, fmt.Errorf("iam: credential report header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	need := []string{"user"}
	for _, n := range []string{"1", "2"} {
		need = append(need, "access_key_"+n+"_active", "access_key_"+n+"_last_rotated", "access_key_"+n+"_last_used_date")
	}
	for _, n := range need {
		if _, ok := col[n]; !ok {
			return rep, fmt.Errorf("iam: credential report has no column %q", n)
		}
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("iam: credential report line %d: %w", line, err)
		}
		user := rec[col["user"]]
		if user == "<root_account>" {
			continue
		}
		var keys []keyrot.ReportedKey
		for _, n := range []string{"1", "2"} {
			rotated := rec[col["access_key_"+n+"_last_rotated"]]
			if rotated == "N/A" || rotated == "" {
				continue
			}
			k := keyrot.ReportedKey{Active: rec[col["access_key_"+n+"_active"]] == "true"}
			if k.Created, err = time.Parse(time.RFC3339, rotated); err != nil {
				return rep, fmt.Errorf("iam: credential report line %d (user %q): access_key_%s_last_rotated: %w", line, user, n, err)
			}
			if used := rec[col["access_key_"+n+"_last_used_date"]]; used != "N/A" && used != "" {
				k.LastUsed, _ = time.Parse(time.RFC3339, used) // informative only
			}
			keys = append(keys, k)
		}
		slices.SortStableFunc(keys, func(a, b keyrot.ReportedKey) int { return a.Created.Compare(b.Created) })
		rep.Users[strings.Clone(user)] = keys
	}
	return rep, nil
}
