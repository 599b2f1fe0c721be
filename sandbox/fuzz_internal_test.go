package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// The sandbox's parsers of outside input: the SigV4 Authorization header
// and query, the query protocol's form (IAM, STS), the JSON protocol
// (Secrets Manager: FuzzSecretsManagerHandle), SES v2's REST JSON and raw
// MIME (FuzzParseRawEmail), and the whole server behind a valid signature
// (FuzzServeSigned). CI runs each briefly (.ci/fuzz).

// FuzzAuthenticate: any Authorization header, query, date and body is
// either refused with a 4xx in the service's words or, if the signature
// were somehow right, accepted; never a panic, never a 5xx.
func FuzzAuthenticate(f *testing.F) {
	for _, s := range []struct{ auth, query, date, sha string }{
		{"AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd", "", "20260101T000000Z", ""},
		{"AWS4-HMAC-SHA256 Credential=AKIAUNKNOWN/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=00", "Action=GetCallerIdentity", "20260101T000000Z", "UNSIGNED-PAYLOAD"},
		{"AWS4-HMAC-SHA256 Credential=test/2026/us-east-1/secretsmanager/aws4_request,SignedHeaders=authorization;expect;host,Signature=", "", "bad", "zz"},
		{"AWS4-HMAC-SHA256 Credential=test//us-east-1/x/aws4_request, SignedHeaders=;;, Signature=1", "", "", ""},
		{"Basic dXNlcjpwYXNz", "", "", ""},
		{"", "X-Amz-Signature=abc&X-Amz-Credential=test", "", ""},
		{"AWS4-HMAC-SHA256 ", "%zz", "", ""},
	} {
		f.Add(s.auth, s.query, s.date, s.sha, []byte("Action=ListUsers&Version=2010-05-08"))
	}
	s, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, auth, query, date, sha string, body []byte) {
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/", RawQuery: query}, Host: "localhost", Header: http.Header{}}
		r.Header.Set("Authorization", auth)
		r.Header.Set("X-Amz-Date", date)
		r.Header.Set("X-Amz-Content-Sha256", sha)
		a, parseErr := parseAuthorization(r)
		if a != nil && (a.AccessKeyID == "" || a.SignedHeaders == "" || a.Signature == "") {
			t.Fatalf("parsed %q into %+v", auth, a)
		}
		if parseErr != nil && (parseErr.Status < 400 || parseErr.Status >= 500) {
			t.Fatalf("%q: status %d", auth, parseErr.Status)
		}
		c := &call{service: guessService(r)}
		if a != nil && knownService(a.Service) {
			c.service = a.Service
		}
		if apiErr := s.authenticate(r, c, a, parseErr); apiErr != nil && (apiErr.Status < 400 || apiErr.Status >= 500) {
			t.Fatalf("%q: authenticate status %d", auth, apiErr.Status)
		}
	})
}

// FuzzParseQueryForm: any query string, content type and body either
// parses or is refused with a 400.
func FuzzParseQueryForm(f *testing.F) {
	f.Add("Action=GetCallerIdentity&Version=2011-06-15", "", []byte(""))
	f.Add("", "application/x-www-form-urlencoded; charset=utf-8", []byte("Action=CreateUser&UserName=a&Tags.member.1.Key=k&Tags.member.1.Value=v"))
	f.Add("Action=x", "text/plain", []byte("a=b"))
	f.Add("%zz", "", []byte("a=%"))
	f.Add("a=1;b=2", "multipart/form-data; boundary=", []byte("\x00"))
	f.Fuzz(func(t *testing.T, query, contentType string, body []byte) {
		r := &http.Request{Method: http.MethodPost, URL: &url.URL{Path: "/", RawQuery: query}, Header: http.Header{}}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		form, apiErr := parseQueryForm(r, body)
		if apiErr != nil {
			if apiErr.Status != http.StatusBadRequest {
				t.Fatalf("status %d", apiErr.Status)
			}
			return
		}
		_ = queryList(form, "Tags.member", "Key", "Value")
	})
}

// FuzzIAMHandle: any operation with any parameters, from the admin or
// from an IAM user, is answered with a response that encodes as XML or
// with a 4xx; never a panic, never a 5xx.
func FuzzIAMHandle(f *testing.F) {
	for _, s := range []struct{ op, query string }{
		{"CreateUser", "UserName=bob&Path=/team/&Tags.member.1.Key=owner&Tags.member.1.Value=ops"},
		{"CreateAccessKey", "UserName=alice"},
		{"UpdateAccessKey", "UserName=alice&AccessKeyId=AKIAAAAAAAAAAAAAAAAA&Status=Inactive"},
		{"DeleteAccessKey", "AccessKeyId=AKIA"},
		{"ListUsers", "PathPrefix=/&MaxItems=1&Marker=xyz"},
		{"ListAccessKeys", "UserName=alice&MaxItems=0"},
		{"GetGroup", "GroupName=g&MaxItems=-1"},
		{"ListUserTags", "UserName=ALICE"},
		{"TagUser", "UserName=alice&Tags.member.1.Key=&Tags.member.2.Key=x"},
		{"GetAccessKeyLastUsed", "AccessKeyId="},
		{"NoSuchAction", "Version=2099-01-01"},
	} {
		f.Add(s.op, s.query, false)
		f.Add(s.op, s.query, true)
	}
	f.Fuzz(func(t *testing.T, op, query string, asUser bool) {
		form, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		m := newIAM(wallClock{}, "123456789012", 1, func() {})
		admin := principal{Admin: true, ARN: "arn:aws:iam::123456789012:root"}
		if _, err := m.handle(admin, "CreateUser", url.Values{"UserName": {"alice"}}); err != nil {
			t.Fatal(err)
		}
		caller := admin
		if asUser {
			caller = principal{AccessKeyID: "AKIAALICE", UserName: "alice", ARN: "arn:aws:iam::123456789012:user/alice"}
		}
		resp, apiErr := m.handle(caller, op, form)
		if apiErr != nil {
			if apiErr.Status < 400 || apiErr.Status >= 500 {
				t.Fatalf("%s %q: status %d %s", op, query, apiErr.Status, apiErr.Message)
			}
			return
		}
		if resp != nil {
			if _, err := xml.Marshal(resp); err != nil {
				t.Fatalf("%s %q: encode the response: %v", op, query, err)
			}
		}
	})
}

// FuzzServeSigned: requests the SDK would sign correctly, to any service,
// with any operation, path, content type and body, reach the protocol
// handlers; the server answers every one with a status below 500 (a panic
// would be a 500: the server recovers it).
func FuzzServeSigned(f *testing.F) {
	seeds := []struct {
		service          uint8
		method, path, op string
		contentType      string
		body             string
	}{
		{0, "POST", "/", "", "application/x-www-form-urlencoded", "Action=CreateUser&UserName=a&Version=2010-05-08"},
		{0, "POST", "/", "", "application/x-www-form-urlencoded", "Action=ListAccessKeys&UserName=nobody"},
		{1, "POST", "/", "", "application/x-www-form-urlencoded", "Action=GetCallerIdentity&Version=2011-06-15"},
		{1, "GET", "/", "", "", ""},
		{2, "POST", "/", "CreateSecret", "application/x-amz-json-1.1", `{"Name":"n","SecretString":"s","Tags":[{"Key":"k","Value":"v"}]}`},
		{2, "POST", "/", "ListSecrets", "application/x-amz-json-1.1", `{"Filters":[{"Key":"name","Values":["n"]}],"MaxResults":1}`},
		{2, "POST", "/", "BatchGetSecretValue", "application/x-amz-json-1.1", `{"SecretIdList":["n","m"]}`},
		{2, "POST", "/", "", "application/x-amz-json-1.1", `{`},
		{3, "POST", "/v2/email/outbound-emails", "", "application/json", `{"FromEmailAddress":"a@example.com","Destination":{"ToAddresses":["b@example.com"]},"Content":{"Simple":{"Subject":{"Data":"s"},"Body":{"Text":{"Data":"t"}}}}}`},
		{3, "POST", "/v2/email/outbound-emails", "", "application/json", `{"Content":{"Raw":{"Data":"RnJvbTogYUBleGFtcGxlLmNvbQ0KDQpoaQ=="}}}`},
		{3, "GET", "/v2/email/account", "", "", ""},
		{3, "DELETE", "/v2/email/x", "", "", ""},
		{1, "POST", "/", "", "application/x-www-form-urlencoded", "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A100000000001%3Arole%2Fkeyrot-member&RoleSessionName=s1&DurationSeconds=900"},
		{4, "POST", "/", "ListAccounts", "application/x-amz-json-1.1", `{"MaxResults":1,"NextToken":"MQ"}`},
		{4, "POST", "/", "ListChildren", "application/x-amz-json-1.1", `{"ParentId":"r-root","ChildType":"ACCOUNT"}`},
		{5, "POST", "/", "CreateQueue", "application/x-amz-json-1.0", `{"QueueName":"q","Attributes":{"RedrivePolicy":"{\"deadLetterTargetArn\":\"a\",\"maxReceiveCount\":1}"}}`},
		{5, "POST", "/", "SendMessageBatch", "application/x-amz-json-1.0", `{"QueueUrl":"http://h/123456789012/q","Entries":[{"Id":"a","MessageBody":"b"}]}`},
		{5, "POST", "/", "ReceiveMessage", "application/x-amz-json-1.0", `{"QueueUrl":"http://h/123456789012/q","WaitTimeSeconds":1}`},
	}
	for _, s := range seeds {
		f.Add(s.service, s.method, s.path, s.op, s.contentType, []byte(s.body))
	}
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}
	f.Fuzz(func(t *testing.T, service uint8, method, path, op, contentType string, body []byte) {
		svc := []string{svcIAM, svcSTS, svcSecretsManager, svcSES, svcOrganizations, svcSQS}[int(service)%6]
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u, err := url.Parse("http://localhost" + path)
		if err != nil {
			return
		}
		// The deadline bounds an SQS long poll; what is checked is the status.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		r, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if prefix, ok := jsonTargets[svc]; ok {
			r.Header.Set("X-Amz-Target", prefix+op)
		}
		sum := sha256.Sum256(body)
		if err := signer.SignHTTP(context.Background(), creds, r, hex.EncodeToString(sum[:]), svc, "us-east-1", time.Now()); err != nil {
			return
		}
		s, err := New(Options{MemberAccounts: 1})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s %s (op %q): %d %s", svc, method, path, op, w.Code, w.Body)
		}
	})
}
