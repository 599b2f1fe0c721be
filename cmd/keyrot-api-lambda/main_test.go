package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// apiKey is the full-access key in the test's keys secret, as the stack
// generates it (48 random alphanumerics).
const apiKey = "Qm7Zt4Xw9Lp2Rv8Nc5Hy3Kd6Fs1Jb0GaEu4Wo7Ti2Yr5Pn8Vx"

// env is the API function's environment as deploy/key_rotation.yaml sets it.
var env = map[string]string{
	"KEYROT_USERS":            "deployer",
	"KEYROT_USER_TAG":         "keyrot:managed=true",
	"KEYROT_PATH_PREFIX":      "/",
	"KEYROT_ROTATE_EVERY":     "5m",
	"KEYROT_DEACTIVATE_AFTER": "2m",
	"KEYROT_DELETE_AFTER":     "1m",
	"KEYROT_SECRET_PREFIX":    "iam-key-rotation/",
	"KEYROT_NOTIFY_VIA":       "ses",
	"KEYROT_NOTIFY_SENDER":    "keys@example.com",
	"KEYROT_NOTIFY_ADMIN":     "admin@example.com",
	"KEYROT_API_KEYS_SECRET":  "iam-key-rotation-api-keys",
	"KEYROT_LOG_FORMAT":       "json",
	"LOG_LEVEL":               "info",
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// fixture is a sandbox with one managed user rotated once, the stack's API
// keys secret, and the API function's handler on a driven clock.
type fixture struct {
	t      *testing.T
	sb     *sandbox.Server
	clock  *mock.Clock
	aws    aws.Config
	engine *app.App
	h      *handler
	out    *testkit.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clock := mock.NewClock(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	clock.SetAutoAdvance(true) // waits inside a rotation (STS propagation) cost nothing
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 11})
	cfg := sandboxtest.Config(t, sb)
	f := &fixture{t: t, sb: sb, clock: clock, aws: cfg, engine: seedStack(t, cfg, clock), out: &testkit.Buffer{}}
	f.rotate(false)
	var err error
	f.h, err = newHandler(context.Background(), options{LookupEnv: lookup(env), Stdout: f.out, AWS: &cfg, Clock: clock})
	if err != nil {
		t.Fatalf("newHandler: %v", err)
	}
	return f
}

// seedStack makes in the sandbox what the stack and a first rotation leave:
// the managed user "deployer" and the API keys secret holding apiKey; it
// returns the rotation engine (clock nil: the wall clock).
func seedStack(t *testing.T, cfg aws.Config, clock keyrot.Clock) *app.App {
	t.Helper()
	ctx := context.Background()
	if _, err := awsiam.NewFromConfig(cfg).CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("deployer")}); err != nil {
		t.Fatal(err)
	}
	if _, err := awssm.NewFromConfig(cfg).CreateSecret(ctx, &awssm.CreateSecretInput{
		Name: aws.String(env["KEYROT_API_KEYS_SECRET"]), SecretString: aws.String(`{"name":"default","key":"` + apiKey + `"}`),
	}); err != nil {
		t.Fatal(err)
	}
	engineCfg := config.Default()
	engineCfg.Users.Names = []string{"deployer"}
	engine, err := app.New(ctx, engineCfg, app.Options{AWS: &cfg, Clock: clock, Notifier: &mock.Notifier{NotifyFn: func(context.Context, keyrot.Event) error { return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	return engine
}

// rotate runs a pass (forced: a new key now) and returns the current key.
func (f *fixture) rotate(force bool) keyrot.Credentials {
	f.t.Helper()
	sum, err := f.engine.Rotator.ReconcileAll(context.Background(), keyrot.RunOptions{Force: force})
	if err != nil || sum.Failed > 0 {
		f.t.Fatalf("rotate: %v %+v", err, sum)
	}
	creds, err := f.engine.Store.Current(context.Background(), "deployer")
	if err != nil {
		f.t.Fatal(err)
	}
	return creds
}

// urlEvent is a function URL request event as Lambda sends it.
func urlEvent(method, rawPath, rawQuery string, headers map[string]string) events.LambdaFunctionURLRequest {
	h := map[string]string{"host": "abcdefghij.lambda-url.eu-west-1.on.aws", "user-agent": "curl/8.5.0", "x-forwarded-proto": "https"}
	for k, v := range headers {
		h[k] = v
	}
	return events.LambdaFunctionURLRequest{
		Version: "2.0", RawPath: rawPath, RawQueryString: rawQuery, Headers: h,
		RequestContext: events.LambdaFunctionURLRequestContext{
			DomainName: "abcdefghij.lambda-url.eu-west-1.on.aws",
			HTTP:       events.LambdaFunctionURLRequestContextHTTPDescription{Method: method, Path: rawPath, Protocol: "HTTP/1.1", SourceIP: "203.0.113.7"},
		},
	}
}

func (f *fixture) invoke(ev events.LambdaFunctionURLRequest) events.LambdaFunctionURLResponse {
	f.t.Helper()
	res, err := f.h.invoke(context.Background(), ev)
	if err != nil {
		f.t.Fatalf("invoke %s %s: %v", ev.RequestContext.HTTP.Method, ev.RawPath, err)
	}
	return res
}

func (f *fixture) get(path, key string) events.LambdaFunctionURLResponse {
	f.t.Helper()
	rawPath, rawQuery, _ := strings.Cut(path, "?")
	headers := map[string]string{}
	if key != "" {
		headers["x-api-key"] = key
	}
	return f.invoke(urlEvent("GET", rawPath, rawQuery, headers))
}

func decode[T any](t *testing.T, res events.LambdaFunctionURLResponse) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(res.Body), &v); err != nil {
		t.Fatalf("body %q: %v", res.Body, err)
	}
	return v
}

// TestFunctionURLRequests serves function URL events with the handler of
// `keyrot serve`: the credentials for a good key, 401 for a bad one, the
// same formats, errors as JSON, and neither the secret access key nor the
// API key in the log.
func TestFunctionURLRequests(t *testing.T) {
	f := newFixture(t)
	creds, err := f.engine.Store.Current(context.Background(), "deployer")
	if err != nil {
		t.Fatal(err)
	}

	res := f.get("/credentials/deployer", apiKey)
	if res.StatusCode != 200 {
		t.Fatalf("good key: status %d: %s", res.StatusCode, res.Body)
	}
	got := decode[keyrothttp.CredentialsResponse](t, res)
	if got.AccessKeyId != creds.AccessKeyID || got.SecretAccessKey != creds.SecretAccessKey || got.UserName != "deployer" {
		t.Errorf("served %s for %s, want the current key %s", got.AccessKeyId, got.UserName, creds.AccessKeyID)
	}
	if got.Expiration.IsZero() || got.NextRotation.IsZero() {
		t.Errorf("Expiration %v, NextRotation %v: want both set", got.Expiration, got.NextRotation)
	}
	for name, want := range map[string]string{"Cache-Control": "no-store", "Content-Type": "application/json", "X-Content-Type-Options": "nosniff"} {
		if got := res.Headers[name]; got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if res.IsBase64Encoded {
		t.Error("a JSON body went base64-encoded")
	}

	bearer := f.invoke(urlEvent("GET", "/credentials/deployer", "format=credential_process", map[string]string{"authorization": "Bearer " + apiKey}))
	if bearer.StatusCode != 200 {
		t.Fatalf("bearer, credential_process: %d %s", bearer.StatusCode, bearer.Body)
	}
	if cp := decode[keyrothttp.CredentialProcessResponse](t, bearer); cp.Version != 1 || cp.AccessKeyId != creds.AccessKeyID {
		t.Errorf("credential_process = %+v", cp)
	}

	for _, tt := range []struct {
		name, path, key string
		status          int
		code            string
	}{
		{"bad key", "/credentials/deployer", "Wr0ngKeyWr0ngKeyWr0ngKeyWr0ngKeyWr0ngKeyWr0ngKey", 401, "unauthorized"},
		{"no key", "/credentials/deployer", "", 401, "unauthorized"},
		{"unmanaged user", "/credentials/nobody", apiKey, 404, "not_found"},
		{"bad user name", "/credentials/%zz", apiKey, 400, "bad_request"},
		{"unknown format", "/credentials/deployer?format=xml", apiKey, 400, "bad_request"},
		{"unknown route", "/admin", apiKey, 404, "not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := f.get(tt.path, tt.key)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, res.Body)
			}
			if got := decode[keyrothttp.ErrorResponse](t, res).Error.Code; got != tt.code {
				t.Errorf("error code %q, want %q", got, tt.code)
			}
			if got := res.Headers["Cache-Control"]; got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if tt.status == 401 && res.Headers["Www-Authenticate"] == "" {
				t.Errorf("401 without WWW-Authenticate: %v", res.Headers)
			}
		})
	}

	list := f.get("/credentials", apiKey)
	if l := decode[keyrothttp.CredentialsListResponse](t, list); list.StatusCode != 200 || len(l.Credentials) != 1 {
		t.Errorf("list: %d %s", list.StatusCode, list.Body)
	}
	if head := f.invoke(urlEvent("HEAD", "/credentials/deployer", "", map[string]string{"x-api-key": apiKey})); head.StatusCode != 200 || head.Body != "" {
		t.Errorf("HEAD: %d with body %q, want 200 and none", head.StatusCode, head.Body)
	}
	if post := f.invoke(urlEvent("POST", "/credentials/deployer", "", map[string]string{"x-api-key": apiKey})); post.StatusCode != 405 || post.Headers["Allow"] == "" {
		t.Errorf("POST: %d %v", post.StatusCode, post.Headers)
	}
	if ready := f.get("/readyz", ""); ready.StatusCode != 200 {
		t.Errorf("readyz: %d %s", ready.StatusCode, ready.Body)
	}
	// A public URL must not list the managed users: /metrics is empty.
	if m := f.get("/metrics", ""); m.StatusCode != 200 || strings.Contains(m.Body, "deployer") {
		t.Errorf("/metrics: %d, names a user: %q", m.StatusCode, m.Body)
	}

	logs := f.out.String()
	for _, secret := range []string{creds.SecretAccessKey, apiKey} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds a secret:\n%s", logs)
		}
	}
	for _, want := range []string{`"msg":"ready"`, `"msg":"credentials read"`, `"remote":"203.0.113.7"`, `"outcome":"granted"`, `"api_key":"default"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

// TestHTTPAPIEvent serves an API Gateway HTTP API (payload 2.0) event,
// decoded from its JSON as the runtime does, with a base64 body and cookies.
func TestHTTPAPIEvent(t *testing.T) {
	f := newFixture(t)
	raw := `{
	  "version": "2.0", "routeKey": "$default", "rawPath": "/credentials/deployer", "rawQueryString": "format=env",
	  "cookies": ["a=1", "b=2"],
	  "headers": {"accept": "*/*", "host": "api.example.com", "x-api-key": "` + apiKey + `"},
	  "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "requestId": "r1",
	    "routeKey": "$default", "stage": "$default", "time": "02/Nov/2026:09:00:00 +0000", "timeEpoch": 1793610000000,
	    "http": {"method": "GET", "path": "/credentials/deployer", "protocol": "HTTP/1.1", "sourceIp": "198.51.100.4", "userAgent": "curl/8"}},
	  "body": "` + base64.StdEncoding.EncodeToString([]byte("ignored")) + `", "isBase64Encoded": true
	}`
	var ev events.LambdaFunctionURLRequest
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		t.Fatal(err)
	}
	res := f.invoke(ev)
	if res.StatusCode != 200 || !strings.Contains(res.Body, "export AWS_ACCESS_KEY_ID=") {
		t.Fatalf("HTTP API event: %d %q", res.StatusCode, res.Body)
	}
	if got, want := res.Headers["Content-Type"], "text/plain; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if !strings.Contains(f.out.String(), `"remote":"198.51.100.4"`) {
		t.Errorf("the audit record does not name the caller's address:\n%s", f.out)
	}

	bad := ev
	bad.Body = "%%% not base64"
	if _, err := f.h.invoke(context.Background(), bad); err == nil {
		t.Error("a body that is not base64 was accepted")
	}
	notHTTP := events.LambdaFunctionURLRequest{}
	if _, err := f.h.invoke(context.Background(), notHTTP); err == nil || !strings.Contains(err.Error(), "not a function URL") {
		t.Errorf("a scheduled event: err = %v", err)
	}
}

// TestRefreshFollowsRotationsAndKeyChanges checks that a rotation made by
// the rotation function and an edit of the API keys secret are served
// once the refresh interval has passed, not before.
func TestRefreshFollowsRotationsAndKeyChanges(t *testing.T) {
	f := newFixture(t)
	first := decode[keyrothttp.CredentialsResponse](t, f.get("/credentials/deployer", apiKey))

	f.clock.SetAutoAdvance(true)
	second := f.rotate(true)
	f.clock.SetAutoAdvance(false)
	if second.AccessKeyID == first.AccessKeyId {
		t.Fatal("the forced rotation made no new key")
	}
	// The clock moved through the rotation's waits; restart the interval.
	f.h.lastRefresh = f.clock.Now()
	if got := decode[keyrothttp.CredentialsResponse](t, f.get("/credentials/deployer", apiKey)).AccessKeyId; got != first.AccessKeyId {
		t.Errorf("within the refresh interval: served %s, want the cached %s", got, first.AccessKeyId)
	}

	const newKey = "Nw3Kq8Rt5Yp2Lm7Xc4Vb9Gh6Js1Df0ZaUe3Wo8Ti5Yr2Pn7Vx"
	_, err := awssm.NewFromConfig(f.aws).PutSecretValue(context.Background(), &awssm.PutSecretValueInput{
		SecretId: aws.String(env["KEYROT_API_KEYS_SECRET"]), SecretString: aws.String(`{"name":"rotated","key":"` + newKey + `"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Second)
	if got := decode[keyrothttp.CredentialsResponse](t, f.get("/credentials/deployer", newKey)).AccessKeyId; got != second.AccessKeyID {
		t.Errorf("after the refresh interval: served %s, want the new current key %s", got, second.AccessKeyID)
	}
	if res := f.get("/credentials/deployer", apiKey); res.StatusCode != 401 {
		t.Errorf("the API key removed from the secret still works: %d", res.StatusCode)
	}

	// A keys secret broken by an edit: the current keys stay.
	if _, err := awssm.NewFromConfig(f.aws).PutSecretValue(context.Background(), &awssm.PutSecretValueInput{
		SecretId: aws.String(env["KEYROT_API_KEYS_SECRET"]), SecretString: aws.String(`{"name":"rotated","key":"short"}`),
	}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * time.Second)
	if res := f.get("/credentials/deployer", newKey); res.StatusCode != 200 {
		t.Errorf("after a bad edit of the keys secret: %d, want the last good keys kept", res.StatusCode)
	}
	if !strings.Contains(f.out.String(), "keeping the current ones") {
		t.Errorf("the bad keys secret is not reported:\n%s", f.out)
	}
}

// TestInitialLoadFailure: Secrets Manager fails at init; reads answer 503
// and the next request a second later loads the cache.
func TestInitialLoadFailure(t *testing.T) {
	f := newFixture(t)
	f.sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: "ListSecrets", Kind: sandbox.Fault5xx, Count: 3}}})
	h, err := newHandler(context.Background(), options{LookupEnv: lookup(env), Stdout: f.out, AWS: &f.aws, Clock: f.clock})
	if err != nil {
		t.Fatalf("a failed first load must not fail init: %v", err)
	}
	f.h = h
	if res := f.get("/credentials/deployer", apiKey); res.StatusCode != 503 {
		t.Fatalf("before any load: %d %s, want 503", res.StatusCode, res.Body)
	}
	f.clock.Advance(notReadyRetry)
	if res := f.get("/credentials/deployer", apiKey); res.StatusCode != 200 {
		t.Fatalf("after the retry: %d %s, want 200", res.StatusCode, res.Body)
	}
}

// TestInitErrors: a config the API cannot serve with fails init with the
// field to fix.
func TestInitErrors(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name  string
		set   map[string]string
		field string
	}{
		{"no API keys", map[string]string{"KEYROT_API_KEYS_SECRET": ""}, "api.keys"},
		{"missing keys secret", map[string]string{"KEYROT_API_KEYS_SECRET": "nope"}, ""},
		{"bad prefix", map[string]string{"KEYROT_SECRET_PREFIX": "*"}, "secrets.prefix"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tt.set {
				e[k] = v
			}
			_, err := newHandler(context.Background(), options{LookupEnv: lookup(e), Stdout: f.out, AWS: &f.aws, Clock: f.clock})
			if err == nil {
				t.Fatal("init succeeded")
			}
			var ce *config.Error
			if tt.field != "" && (!errors.As(err, &ce) || ce.Field != tt.field) {
				t.Errorf("err = %v, want a config error on %s", err, tt.field)
			}
		})
	}
}
