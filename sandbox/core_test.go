package sandbox_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

func TestFaults(t *testing.T) {
	tests := []struct {
		name       string
		rule       sandbox.FaultRule
		call       func(e *coreEnv, noRetry bool) error
		wantCode   string
		wantStatus int
	}{
		{
			name:     "iam throttle",
			rule:     sandbox.FaultRule{Operation: "CreateUser", Kind: "throttle", Count: 2},
			call:     func(e *coreEnv, noRetry bool) error { return createUserCall(e, noRetry) },
			wantCode: "Throttling", wantStatus: 400,
		},
		{
			name:     "iam 5xx",
			rule:     sandbox.FaultRule{Service: "iam", Kind: "5xx", Count: 2},
			call:     func(e *coreEnv, noRetry bool) error { return createUserCall(e, noRetry) },
			wantCode: "ServiceFailure", wantStatus: 500,
		},
		{
			name:     "sts throttle",
			rule:     sandbox.FaultRule{Operation: "GetCallerIdentity", Kind: "throttle", Count: 2},
			call:     stsCall,
			wantCode: "Throttling", wantStatus: 400,
		},
		{
			name:     "sts 5xx",
			rule:     sandbox.FaultRule{Operation: "*", Service: "sts", Kind: "5xx", Count: 2},
			call:     stsCall,
			wantCode: "InternalFailure", wantStatus: 500,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newCoreEnv(t, sandbox.Options{})
			e.s.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{tt.rule}})

			// Without retries the raw error shows.
			err := tt.call(e, true)
			expectCode(t, err, tt.wantCode)
			var re interface{ HTTPStatusCode() int }
			if !errors.As(err, &re) || re.HTTPStatusCode() != tt.wantStatus {
				t.Errorf("status = %v, want %d", err, tt.wantStatus)
			}
			if !retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool() {
				t.Errorf("the SDK's retryer does not retry %v", err)
			}
			// With retries (3 attempts) the second failure is retried away.
			if err := tt.call(e, false); err != nil {
				t.Errorf("with retries: %v", err)
			}
			if n := len(e.s.Faults().Rules); n != 0 {
				t.Errorf("spent rule still listed: %+v", e.s.Faults().Rules)
			}
			if err := tt.call(e, true); err != nil {
				t.Errorf("after the rule is spent: %v", err)
			}
		})
	}

	t.Run("rate", func(t *testing.T) {
		e := newCoreEnv(t, sandbox.Options{Seed: 7})
		e.s.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Service: "sts", Kind: "throttle", Rate: 0.5}}})
		failed := 0
		for range 40 {
			if err := stsCall(e, true); err != nil {
				expectCode(t, err, "Throttling")
				failed++
			}
		}
		if failed < 5 || failed > 35 {
			t.Errorf("rate 0.5 failed %d of 40 calls", failed)
		}
	})

	t.Run("latency", func(t *testing.T) {
		e := newCoreEnv(t, sandbox.Options{Faults: sandbox.Faults{Latency: 150 * time.Millisecond}})
		start := time.Now()
		if err := stsCall(e, true); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("call took %v, want >= 150ms", d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := e.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the client's deadline", err)
		}
	})
}

func createUserCall(e *coreEnv, noRetry bool) error {
	_, err := e.iam.CreateUser(context.Background(), &iam.CreateUserInput{UserName: aws.String(fmt.Sprintf("u%d", time.Now().UnixNano()))},
		func(o *iam.Options) {
			if noRetry {
				o.RetryMaxAttempts = 1
			}
		})
	return err
}

func stsCall(e *coreEnv, noRetry bool) error {
	_, err := e.sts.GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{}, func(o *sts.Options) {
		if noRetry {
			o.RetryMaxAttempts = 1
		}
	})
	return err
}

func TestAdminEndpoints(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	resp, err := http.Get(e.s.URL() + "/_sandbox/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz status = %d", resp.StatusCode)
	}

	body := `{"rules":[{"operation":"CreateAccessKey","kind":"throttle","count":1}],"latency":"5ms","propagation_delay":"10s"}`
	resp, err = http.Post(e.s.URL()+"/_sandbox/faults", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST faults status = %d", resp.StatusCode)
	}
	f := e.s.Faults()
	if f.PropagationDelay != 10*time.Second || f.Latency != 5*time.Millisecond || len(f.Rules) != 1 || f.Rules[0].Count != 1 {
		t.Errorf("faults = %+v", f)
	}
	resp, err = http.Get(e.s.URL() + "/_sandbox/faults")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(got), `"propagation_delay":"10s"`) {
		t.Errorf("GET faults = %s", got)
	}

	resp, err = http.Post(e.s.URL()+"/_sandbox/faults", "application/json", strings.NewReader(`{"rules":[{"kind":"explode"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad faults status = %d, want 400", resp.StatusCode)
	}

	resp, err = http.Get(e.s.URL() + "/_sandbox/ses/outbox")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(got)) != "[]" {
		t.Errorf("empty outbox = %s", got)
	}
	req, _ := http.NewRequest(http.MethodDelete, e.s.URL()+"/_sandbox/ses/outbox", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Errorf("DELETE outbox status = %d", resp.StatusCode)
	}
}

func TestFaultsJSON(t *testing.T) {
	var f sandbox.Faults
	if err := json.Unmarshal([]byte(`{"latency":"250ms","propagation_delay":2000000000}`), &f); err != nil {
		t.Fatal(err)
	}
	if f.Latency != 250*time.Millisecond || f.PropagationDelay != 2*time.Second {
		t.Errorf("decoded %+v", f)
	}
	b, err := json.Marshal(sandbox.Faults{PropagationDelay: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"propagation_delay":"10s"}`; got != want {
		t.Errorf("encoded %s, want %s", got, want)
	}
	if err := json.Unmarshal([]byte(`{"latency":"soon"}`), &f); err == nil {
		t.Error("bad duration accepted")
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	clock := sandboxtest.NewClock(coreEpoch)
	ctx := context.Background()

	s1, err := sandbox.New(sandbox.Options{DataDir: dir, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start(ctx, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e1 := &coreEnv{s: s1, clock: clock, iam: iam.NewFromConfig(sandboxtest.Config(t, s1)), sts: sts.NewFromConfig(sandboxtest.Config(t, s1))}
	k := e1.newUserWithKey(t, "persist")
	if _, err := e1.iam.CreateGroup(ctx, &iam.CreateGroupInput{GroupName: aws.String("g")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.iam.AddUserToGroup(ctx, &iam.AddUserToGroupInput{GroupName: aws.String("g"), UserName: aws.String("persist")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(ctx); err != nil {
		t.Fatal(err)
	}

	s2 := sandboxtest.Start(t, sandbox.Options{DataDir: dir, Clock: clock})
	e2 := &coreEnv{s: s2, clock: clock, iam: iam.NewFromConfig(sandboxtest.Config(t, s2)), sts: sts.NewFromConfig(sandboxtest.Config(t, s2))}
	// The old key still signs.
	if _, err := e2.userSTS(t, k).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("key after restart: %v", err)
	}
	lu := ok1[*iam.GetAccessKeyLastUsedOutput](t)(e2.iam.GetAccessKeyLastUsed(ctx, &iam.GetAccessKeyLastUsedInput{AccessKeyId: k.AccessKeyId}))
	if aws.ToString(lu.AccessKeyLastUsed.ServiceName) != "sts" {
		t.Errorf("last used after restart = %+v", lu.AccessKeyLastUsed)
	}
	g := ok1[*iam.GetGroupOutput](t)(e2.iam.GetGroup(ctx, &iam.GetGroupInput{GroupName: aws.String("g")}))
	if len(g.Users) != 1 {
		t.Errorf("group members after restart = %d", len(g.Users))
	}
	// The two-keys rule still holds, and new ids do not collide.
	k2 := ok1[*iam.CreateAccessKeyOutput](t)(e2.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("persist")}))
	if aws.ToString(k2.AccessKey.AccessKeyId) == aws.ToString(k.AccessKeyId) {
		t.Error("new key reuses an old id")
	}
	_, err = e2.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("persist")})
	expectCode(t, err, "LimitExceeded")
}

// rawPost posts a hand-written, correctly signed query-protocol body.
func rawPost(t *testing.T, s *sandbox.Server, service, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	signRaw(t, s, req, []byte(body), service)
	return doRaw(t, req)
}

func doRaw(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func xmlErrorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Code      string `xml:"Error>Code"`
		RequestID string `xml:"RequestId"`
	}
	if err := xml.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not XML: %v: %s", err, body)
	}
	if e.RequestID == "" {
		t.Errorf("error without a RequestId: %s", body)
	}
	return e.Code
}

func TestBadInput(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{MaxBodyBytes: 4096})
	tests := []struct {
		name, service, body string
		wantStatus          int
		wantCode            string
	}{
		{"unknown action", "iam", "Action=MakeCoffee&Version=2010-05-08", 400, "InvalidAction"},
		{"unknown sts action", "sts", "Action=AssumeRoleWithTelepathy&Version=2011-06-15", 400, "InvalidAction"},
		{"missing action", "iam", "Version=2010-05-08", 400, "MissingAction"},
		{"malformed form", "iam", "Action=CreateUser&UserName=%zz", 400, "MalformedQueryString"},
		{"missing parameter", "iam", "Action=CreateUser&Version=2010-05-08", 400, "MissingParameter"},
		{"bad status", "iam", "Action=UpdateAccessKey&AccessKeyId=AKIAAAAAAAAAAAAAAAAA&Status=Maybe", 400, "ValidationError"},
		{"bad max items", "iam", "Action=ListUsers&MaxItems=zero", 400, "ValidationError"},
		{"bad marker", "iam", "Action=ListUsers&Marker=***", 400, "ValidationError"},
		{"oversized body", "iam", "Action=CreateUser&UserName=" + strings.Repeat("a", 5000), 413, "RequestEntityTooLarge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := rawPost(t, e.s, tt.service, tt.body)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d: %s", status, tt.wantStatus, body)
			}
			if got := xmlErrorCode(t, body); got != tt.wantCode {
				t.Errorf("code = %q, want %q", got, tt.wantCode)
			}
		})
	}

	t.Run("no auth", func(t *testing.T) {
		resp, err := http.Post(e.s.URL()+"/", "application/x-www-form-urlencoded", strings.NewReader("Action=ListUsers&Version=2010-05-08"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || xmlErrorCode(t, string(b)) != "MissingAuthenticationToken" {
			t.Errorf("status %d body %s", resp.StatusCode, b)
		}
	})
	t.Run("garbage auth", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.s.URL()+"/", strings.NewReader("Action=ListUsers"))
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=nonsense")
		status, body := doRaw(t, req)
		if status != http.StatusBadRequest || xmlErrorCode(t, body) != "IncompleteSignature" {
			t.Errorf("status %d body %s", status, body)
		}
	})
	t.Run("tampered body", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.s.URL()+"/", strings.NewReader("Action=CreateUser&UserName=mallory"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		signRaw(t, e.s, req, []byte("Action=CreateUser&UserName=alice"), "iam")
		status, body := doRaw(t, req)
		if status != http.StatusForbidden || xmlErrorCode(t, body) != "SignatureDoesNotMatch" {
			t.Errorf("status %d body %s", status, body)
		}
	})
	t.Run("get query string", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, e.s.URL()+"/?Action=GetCallerIdentity&Version=2011-06-15", nil)
		signRaw(t, e.s, req, nil, "sts")
		status, body := doRaw(t, req)
		if status != http.StatusOK || !strings.Contains(body, "<GetCallerIdentityResult>") {
			t.Errorf("status %d body %s", status, body)
		}
	})
	t.Run("unknown service", func(t *testing.T) {
		status, body := rawPost(t, e.s, "s3", "Action=ListBuckets")
		if status != http.StatusBadRequest || xmlErrorCode(t, body) != "InvalidAction" {
			t.Errorf("status %d body %s", status, body)
		}
	})
	// The server survives all of it.
	if err := stsCall(e, true); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrency(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{DataDir: t.TempDir()})
	ctx := context.Background()
	const workers, perWorker = 16, 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker*4)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				name := fmt.Sprintf("c-%d-%d", w, i)
				if _, err := e.iam.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
					errs <- err
					continue
				}
				for range 3 { // the third must hit the quota
					_, err := e.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
					if err != nil && awsErrCode(err) != "LimitExceeded" {
						errs <- err
					}
				}
				if _, err := e.iam.ListUsers(ctx, &iam.ListUsersInput{}); err != nil {
					errs <- err
				}
				if err := stsCall(e, false); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	p := iam.NewListUsersPaginator(e.iam, &iam.ListUsersInput{})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range out.Users {
			n++
			keys := ok1[*iam.ListAccessKeysOutput](t)(e.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: u.UserName}))
			if len(keys.AccessKeyMetadata) != 2 {
				t.Errorf("user %q has %d keys, want 2", aws.ToString(u.UserName), len(keys.AccessKeyMetadata))
			}
		}
	}
	if n != workers*perWorker {
		t.Errorf("%d users, want %d", n, workers*perWorker)
	}
}

func TestStartBindError(t *testing.T) {
	s := sandboxtest.Start(t, sandbox.Options{})
	s2, err := sandbox.New(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(s.URL())
	if err := s2.Start(context.Background(), u.Host); err == nil {
		t.Error("Start on a busy address succeeded")
	}
	_ = s2.Close(context.Background())
}

func BenchmarkSandboxGetCallerIdentity(b *testing.B) {
	s := sandboxtest.Start(b, sandbox.Options{})
	c := sts.NewFromConfig(sandboxtest.Config(b, s))
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkSandboxListAccessKeys(b *testing.B) {
	s := sandboxtest.Start(b, sandbox.Options{})
	ctx := context.Background()
	admin := iam.NewFromConfig(sandboxtest.Config(b, s))
	if _, err := admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("bench")}); err != nil {
		b.Fatal(err)
	}
	k, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("bench")})
	if err != nil {
		b.Fatal(err)
	}
	// Signed by the user's key, so every call also records last use.
	c := iam.NewFromConfig(sandboxtest.UserConfig(b, s, aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.ListAccessKeys(ctx, &iam.ListAccessKeysInput{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// signRaw signs req with the admin key, for service, over payload.
func signRaw(t *testing.T, s *sandbox.Server, req *http.Request, payload []byte, service string) {
	t.Helper()
	id, secret := s.AdminCredentials()
	sum := sha256.Sum256(payload)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, req,
		hex.EncodeToString(sum[:]), service, "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
}

// TestAdminCounts: the admin endpoints count the faults injected and list
// every key issued, deleted ones too, for a chaos run's figures and its
// search for leaked secrets.
func TestAdminCounts(t *testing.T) {
	e := newCoreEnv(t, sandbox.Options{})
	ctx := context.Background()
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(e.s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	e.s.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{
		{Operation: "CreateUser", Kind: sandbox.FaultThrottle, Count: 1},
		{Operation: "CreateAccessKey", Kind: sandbox.FaultLostResponse, Count: 1},
	}})
	kept := e.newUserWithKey(t, "counted") // one throttle, one lost response, both retried
	var counts sandbox.FaultCounts
	getJSON("/_sandbox/faults/injected", &counts)
	if counts[sandbox.FaultThrottle] != 1 || counts[sandbox.FaultLostResponse] != 1 || counts[sandbox.Fault5xx] != 0 {
		t.Errorf("injected = %v, want one throttle and one lost response", counts)
	}

	var keys []sandbox.IssuedKey
	getJSON("/_sandbox/iam/access-keys", &keys)
	if len(keys) != 2 {
		t.Fatalf("issued keys = %+v, want the lost response's and the kept one", keys)
	}
	lost, keptAt := keys[0], 1
	if lost.AccessKeyID == aws.ToString(kept.AccessKeyId) {
		lost, keptAt = keys[1], 0
	}
	if _, err := e.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("counted"), AccessKeyId: aws.String(lost.AccessKeyID), Status: "Inactive"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("counted"), AccessKeyId: aws.String(lost.AccessKeyID)}); err != nil {
		t.Fatal(err)
	}
	getJSON("/_sandbox/iam/access-keys", &keys)
	if len(keys) != 2 || !keys[1-keptAt].Deleted || keys[1-keptAt].SecretAccessKey == "" || keys[keptAt].Deleted ||
		keys[keptAt].SecretAccessKey != aws.ToString(kept.SecretAccessKey) || keys[keptAt].UserName != "counted" {
		t.Errorf("issued keys after a deletion = %+v", keys)
	}
}
