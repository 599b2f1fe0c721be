package http_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/testkit"
)

func TestStatuses(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		method  string
		path    string
		headers []string
		status  int
		code    string // error code, for errors
	}{
		{"no key", "GET", "/credentials/alice", nil, 401, "unauthorized"},
		{"wrong key", "GET", "/credentials/alice", []string{xkey("krt_wrong")}, 401, "unauthorized"},
		{"hash instead of key", "GET", "/credentials/alice", []string{xkey(keyrothttp.HashAPIKey(e.keys.admin))}, 401, "unauthorized"},
		{"wrong bearer scheme", "GET", "/credentials/alice", []string{"Authorization: Basic " + e.keys.admin}, 401, "unauthorized"},
		{"no key unmanaged user", "GET", "/credentials/ghost", nil, 401, "unauthorized"},
		{"no key list", "GET", "/credentials", nil, 401, "unauthorized"},
		{"x-api-key", "GET", "/credentials/alice", []string{xkey(e.keys.admin)}, 200, ""},
		{"bearer", "GET", "/credentials/alice", []string{bearer(e.keys.admin)}, 200, ""},
		{"bearer lowercase scheme", "GET", "/credentials/alice", []string{"Authorization: bearer " + e.keys.admin}, 200, ""},
		{"head", "HEAD", "/credentials/alice", []string{xkey(e.keys.admin)}, 200, ""},
		{"glob scope", "GET", "/credentials/ci-deploy", []string{xkey(e.keys.ci)}, 200, ""},
		{"outside glob", "GET", "/credentials/alice", []string{xkey(e.keys.ci)}, 403, "forbidden"},
		{"outside scope managed", "GET", "/credentials/bob", []string{xkey(e.keys.reader)}, 403, "forbidden"},
		{"outside scope unmanaged", "GET", "/credentials/nobody", []string{xkey(e.keys.reader)}, 403, "forbidden"},
		{"in scope unmanaged", "GET", "/credentials/ghost", []string{xkey(e.keys.reader)}, 404, "not_found"},
		{"full access unmanaged", "GET", "/credentials/ghost", []string{xkey(e.keys.admin)}, 404, "not_found"},
		{"invalid user name", "GET", "/credentials/a%20b", []string{xkey(e.keys.admin)}, 400, "bad_request"},
		{"unknown format", "GET", "/credentials/alice?format=xml", []string{xkey(e.keys.admin)}, 400, "bad_request"},
		{"list no permission", "GET", "/credentials", []string{xkey(e.keys.reader)}, 403, "forbidden"},
		{"list env", "GET", "/credentials?format=env", []string{xkey(e.keys.admin)}, 400, "bad_request"},
		{"post", "POST", "/credentials/alice", []string{xkey(e.keys.admin)}, 405, "method_not_allowed"},
		{"delete list", "DELETE", "/credentials", []string{xkey(e.keys.admin)}, 405, "method_not_allowed"},
		{"put healthz", "PUT", "/healthz", nil, 405, "method_not_allowed"},
		{"unknown path", "GET", "/nope", nil, 404, "not_found"},
		{"root", "GET", "/", nil, 404, "not_found"},
		{"healthz", "GET", "/healthz", nil, 200, ""},
		{"readyz", "GET", "/readyz", nil, 200, ""},
		{"metrics", "GET", "/metrics", nil, 200, ""},
		{"openapi", "GET", "/openapi.yaml", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, tt.headers...)
			if got, want := r.status, tt.status; got != want {
				t.Fatalf("status = %d, want %d; body %s", got, want, r.body)
			}
			if tt.code != "" {
				var er keyrothttp.ErrorResponse
				if err := json.Unmarshal([]byte(r.body), &er); err != nil {
					t.Fatalf("error body %q is not JSON: %v", r.body, err)
				}
				if got, want := er.Error.Code, tt.code; got != want {
					t.Errorf("error code = %q, want %q", got, want)
				}
				if er.Error.Message == "" {
					t.Error("error message is empty")
				}
			}
			if tt.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.status == 405 && r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
			if strings.HasPrefix(tt.path, "/credentials") {
				if got, want := r.header.Get("Cache-Control"), "no-store"; got != want {
					t.Errorf("Cache-Control = %q, want %q", got, want)
				}
			}
		})
	}
}

// TestNoEnumeration: without scope, a managed and an unmanaged user get
// byte-identical answers.
func TestNoEnumeration(t *testing.T) {
	e := newEnv(t)
	for _, key := range []string{"", e.keys.reader} {
		managed := e.do(t, "GET", "/credentials/bob", xkey(key))
		unmanaged := e.do(t, "GET", "/credentials/bobby", xkey(key))
		if managed.status != unmanaged.status || managed.body != unmanaged.body {
			t.Errorf("key present %t: managed user gives %d %s, unmanaged %d %s", key != "", managed.status, managed.body, unmanaged.status, unmanaged.body)
		}
	}
}

func TestFormats(t *testing.T) {
	e := newEnv(t)
	want := fixtures()[0].Annotate(e.clock.Now())

	t.Run("json", func(t *testing.T) {
		r := e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin))
		var got keyrothttp.CredentialsResponse
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatal(err)
		}
		if got.UserName != "alice" || got.AccessKeyId != want.AccessKeyID || got.SecretAccessKey != aliceSecret {
			t.Errorf("got %+v", got)
		}
		if !got.CreateDate.Equal(t0) || !got.NextRotation.Equal(want.NextRotation) || !got.Expiration.Equal(want.Expiration) {
			t.Errorf("times: %v %v %v, want %v %v %v", got.CreateDate, got.NextRotation, got.Expiration, t0, want.NextRotation, want.Expiration)
		}
		for _, f := range []string{`"CreateDate":"2025-03-01T12:00:00Z"`, `"NextRotation":"2025-03-01T12:05:01Z"`, `"Expiration":"2025-03-01T12:06:01Z"`} {
			if !strings.Contains(r.body, f) {
				t.Errorf("body %s lacks %s (RFC 3339 UTC)", r.body, f)
			}
		}
		if got, want := r.header.Get("Content-Type"), "application/json"; got != want {
			t.Errorf("Content-Type = %q", got)
		}
	})

	t.Run("credential_process", func(t *testing.T) {
		r := e.do(t, "GET", "/credentials/alice?format=credential_process", xkey(e.keys.admin))
		var fields map[string]any
		if err := json.Unmarshal([]byte(r.body), &fields); err != nil {
			t.Fatal(err)
		}
		if got, want := len(fields), 4; got != want {
			t.Errorf("%d fields, want exactly Version, AccessKeyId, SecretAccessKey, Expiration: %v", got, fields)
		}
		// Decode with the SDK's own documented struct.
		var got processcreds.CredentialProcessResponse
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatal(err)
		}
		if got.Version != 1 || got.AccessKeyID != want.AccessKeyID || got.SecretAccessKey != aliceSecret || got.Expiration == nil || !got.Expiration.Equal(want.Expiration) {
			t.Errorf("got %+v", got)
		}
		// The SDK refetches at Expiration, which is before the key can be deactivated.
		policy := keyrot.DefaultPolicy()
		if deactivate := want.CurrentSince.Add(policy.RotateEvery).Add(policy.DeactivateAfter); !got.Expiration.Before(deactivate) {
			t.Errorf("Expiration %v is not before the earliest deactivation %v", got.Expiration, deactivate)
		}
	})

	t.Run("env", func(t *testing.T) {
		r := e.do(t, "GET", "/credentials/alice?format=env", bearer(e.keys.admin))
		want := "export AWS_ACCESS_KEY_ID=AKIAALICE00000000001\n" +
			"export AWS_SECRET_ACCESS_KEY=" + aliceSecret + "\n" +
			"export AWS_CREDENTIAL_EXPIRATION=2025-03-01T12:06:01Z\n" +
			"unset AWS_SESSION_TOKEN\n"
		if got := r.body; got != want {
			t.Errorf("body:\n%s\nwant:\n%s", got, want)
		}
		if got, want := r.header.Get("Content-Type"), "text/plain; charset=utf-8"; got != want {
			t.Errorf("Content-Type = %q", got)
		}
	})

	t.Run("list is scoped", func(t *testing.T) {
		for _, tt := range []struct {
			key   string
			users []string
		}{
			{e.keys.admin, []string{"alice", "bob", "ci-deploy"}},
			{e.keys.ci, []string{"ci-deploy"}},
		} {
			r := e.do(t, "GET", "/credentials", xkey(tt.key))
			var list keyrothttp.CredentialsListResponse
			if err := json.Unmarshal([]byte(r.body), &list); err != nil {
				t.Fatalf("%s: %v", r.body, err)
			}
			var got []string
			for _, c := range list.Credentials {
				got = append(got, c.UserName)
			}
			if strings.Join(got, ",") != strings.Join(tt.users, ",") {
				t.Errorf("users = %v, want %v", got, tt.users)
			}
		}
	})
}

func TestPublishIsServedAtOnce(t *testing.T) {
	e := newEnv(t)
	c := fixtures()[0]
	c.AccessKeyID, c.SecretAccessKey, c.CreateDate, c.CurrentSince = "AKIAALICE00000000NEW", "newSecretForAlice/0000000000000000000000", t0.Add(5*time.Minute), t0.Add(5*time.Minute)
	e.cache.Publish(c)
	r := e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin))
	if !strings.Contains(r.body, "AKIAALICE00000000NEW") {
		t.Errorf("after Publish the API serves %s", r.body)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *keyrothttp.ServerConfig) { c.RateLimit, c.Burst = 1, 2 })
	for i := range 2 {
		if r := e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin)); r.status != 200 {
			t.Fatalf("request %d in burst: %d", i, r.status)
		}
	}
	r := e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin))
	if got, want := r.status, http.StatusTooManyRequests; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	if got, want := r.header.Get("Retry-After"), "1"; got != want {
		t.Errorf("Retry-After = %q, want %q", got, want)
	}
	// Another key has its own budget.
	if r := e.do(t, "GET", "/credentials/ci-deploy", xkey(e.keys.ci)); r.status != 200 {
		t.Errorf("other key: %d", r.status)
	}
	e.clock.Advance(time.Second)
	if r := e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin)); r.status != 200 {
		t.Errorf("after a second: %d", r.status)
	}
}

// logRecords decodes the JSON log lines.
func logRecords(t *testing.T, logs string) []map[string]any {
	t.Helper()
	recs, err := testkit.JSONLines([]byte(logs))
	if err != nil {
		t.Fatalf("log: %v", err)
	}
	return recs
}

// TestProbesAtDebug: health probes, asked every few seconds by a load
// balancer, are logged at debug level; everything else at info.
func TestProbesAtDebug(t *testing.T) {
	e := newEnv(t)
	e.do(t, "GET", "/healthz")
	e.do(t, "GET", "/readyz")
	e.do(t, "GET", "/credentials/alice", xkey(e.keys.reader))
	levels := map[string]string{}
	for _, r := range logRecords(t, e.logs.String()) {
		if route, ok := r["route"].(string); ok {
			levels[route], _ = r["level"].(string)
		}
	}
	for route, want := range map[string]string{"GET /healthz": "DEBUG", "GET /readyz": "DEBUG", "GET /credentials/{user}": "INFO"} {
		if got := levels[route]; got != want {
			t.Errorf("%s logged at %q, want %q", route, got, want)
		}
	}
}

func TestAuditAndAccessLog(t *testing.T) {
	e := newEnv(t)
	e.do(t, "GET", "/credentials/alice?format=env", xkey(e.keys.reader))
	e.do(t, "GET", "/credentials/bob", xkey(e.keys.reader))
	e.do(t, "GET", "/credentials", xkey(e.keys.ci))

	// A single-user read writes one record, its audit record, which also
	// carries the request's fields; a list writes an audit record per user
	// and an access record (system=http).
	var audit, access []map[string]any
	for _, r := range logRecords(t, e.logs.String()) {
		switch r["system"] {
		case "audit":
			audit = append(audit, r)
			if r["route"] != nil {
				access = append(access, r)
			}
		case "http":
			access = append(access, r)
		}
	}
	want := []map[string]string{
		{"api_key": "reader", "user": "alice", "key_id": "AKIAALICE00000000001", "format": "env", "outcome": "granted"},
		{"api_key": "reader", "user": "bob", "key_id": "", "format": "json", "outcome": "forbidden"},
		{"api_key": "ci", "user": "ci-deploy", "key_id": "AKIACIDEPLOY00000003", "format": "json", "outcome": "granted"},
	}
	if got, want := len(audit), len(want); got != want {
		t.Fatalf("%d audit records, want %d: %v", got, want, audit)
	}
	for i, w := range want {
		for k, v := range w {
			if got := audit[i][k]; got != v {
				t.Errorf("audit[%d][%s] = %v, want %q", i, k, got, v)
			}
		}
		if remote, _ := audit[i]["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
			t.Errorf("audit[%d] remote = %q", i, remote)
		}
		if audit[i]["time"] == nil {
			t.Errorf("audit[%d] has no time", i)
		}
	}
	if got, want := len(access), 3; got != want {
		t.Fatalf("%d access records, want %d", got, want)
	}
	for i, route := range []string{"GET /credentials/{user}", "GET /credentials/{user}", "GET /credentials"} {
		if got := access[i]["route"]; got != route {
			t.Errorf("access[%d] route = %v, want %q", i, got, route)
		}
		if access[i]["method"] != "GET" || access[i]["status"] == nil || access[i]["duration"] == nil || access[i]["remote"] == nil {
			t.Errorf("access[%d] = %v", i, access[i])
		}
	}
	if got, want := access[1]["status"], float64(403); got != want {
		t.Errorf("access[1] status = %v, want %v", got, want)
	}
}

// TestNoSecretLeaks drives every kind of request and checks that no secret
// access key shows outside the 200 responses that carry it, and no API key
// anywhere: not in error bodies, logs, audit records or metrics.
func TestNoSecretLeaks(t *testing.T) {
	e := newEnv(t, func(c *keyrothttp.ServerConfig) {
		c.RateLimit, c.Burst = 1, 3
		// The wrong keys below would get this client blocked before it
		// tried every path (TestFailedAuthLimit covers the limit).
		c.AuthFailures.Off = true
	})
	apiKeys := []string{e.keys.admin, e.keys.ci, e.keys.reader, e.keys.nolist}
	var bodies []string
	for _, path := range []string{"/credentials/alice", "/credentials/bob", "/credentials/ci-deploy", "/credentials/ghost", "/credentials", "/credentials/alice?format=credential_process", "/credentials/alice?format=env", "/credentials/alice?format=" + aliceSecret, "/credentials?format=" + aliceSecret, "/credentials/" + e.keys.admin, "/nope"} {
		for _, k := range append(apiKeys, "krt_wrong", aliceSecret) {
			for _, m := range []string{"GET", "POST"} {
				r := e.do(t, m, path, xkey(k))
				if r.status != 200 {
					bodies = append(bodies, r.body)
				}
			}
		}
	}
	e.clock.Advance(5 * time.Second) // the admin key's rate limit refills
	metrics := e.do(t, "GET", "/metrics", bearer(e.keys.admin))
	if metrics.status != 200 || !strings.Contains(metrics.body, "keyrot_http_requests_total") || !strings.Contains(metrics.body, `keyrot_key_age_seconds{user="alice"}`) {
		t.Fatalf("metrics: %d %s", metrics.status, metrics.body)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"system":"audit"`) {
		t.Fatal("no audit records to check")
	}
	for _, place := range []struct{ name, text string }{
		{"error bodies", strings.Join(bodies, "\n")},
		{"logs and audit", logs},
		{"metrics", metrics.body},
	} {
		for _, s := range append(secrets(), apiKeys...) {
			if strings.Contains(place.text, s) {
				t.Errorf("%s contain the secret %.8s...", place.name, s)
			}
		}
		for _, s := range fixtures() {
			if place.name == "metrics" && strings.Contains(place.text, s.AccessKeyID) {
				t.Errorf("metrics contain key id %s", s.AccessKeyID)
			}
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin))
	e.do(t, "GET", "/credentials/ghost", xkey(e.keys.admin))
	e.do(t, "GET", "/credentials/alice")
	m := e.do(t, "GET", "/metrics", bearer(e.keys.admin)).body
	for _, want := range []string{
		`keyrot_http_requests_total{code="200",route="GET /credentials/{user}"} 1`,
		`keyrot_http_requests_total{code="404",route="GET /credentials/{user}"} 1`,
		`keyrot_http_requests_total{code="401",route="GET /credentials/{user}"} 1`,
		`keyrot_http_request_duration_seconds_count{route="GET /credentials/{user}"} 3`,
		`keyrot_cache_hits_total 1`,
		`keyrot_cache_misses_total 1`,
		`keyrot_key_age_seconds{user="alice"} 120`,
		`keyrot_key_age_seconds{user="bob"} 60`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestReadiness(t *testing.T) {
	src := &fakeSource{err: errors.New("secrets manager unavailable")}
	cache := keyrothttp.NewCache(src, keyrot.DefaultPolicy())
	key, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}}}}, cache)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{url: startHandler(t, srv.Handler())}
	if got, want := e.do(t, "GET", "/readyz").status, 503; got != want {
		t.Errorf("readyz before load = %d, want %d", got, want)
	}
	if got, want := e.do(t, "GET", "/credentials/alice", xkey(key)).status, 503; got != want {
		t.Errorf("credentials before load = %d, want %d", got, want)
	}
	if err := cache.Load(context.Background()); err == nil {
		t.Fatal("Load with a failing source succeeded")
	}
	src.set(fixtures(), nil)
	if err := cache.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := e.do(t, "GET", "/readyz").status, 200; got != want {
		t.Errorf("readyz after load = %d, want %d", got, want)
	}
	if got, want := e.do(t, "GET", "/credentials/alice", xkey(key)).status, 200; got != want {
		t.Errorf("credentials after load = %d, want %d", got, want)
	}
}

func startHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestNewServerValidates(t *testing.T) {
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	_, hash, _ := keyrothttp.GenerateAPIKey()
	good := keyrothttp.APIKey{Name: "k", Hash: hash, Users: []string{"*"}}
	tests := []struct {
		name string
		cfg  keyrothttp.ServerConfig
	}{
		{"no keys", keyrothttp.ServerConfig{}},
		{"cert without key", keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{good}, TLSCert: "cert.pem"}},
		{"plaintext key as hash", keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "k", Hash: "krt_abc", Users: []string{"*"}}}}},
		{"bad glob", keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"ci-["}}}}},
		{"duplicate names", keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{good, good}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := keyrothttp.NewServer(tt.cfg, cache); err == nil {
				t.Error("NewServer accepted it")
			}
		})
	}
}

func TestOpenBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Listen: ln.Addr().String(), Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}}}},
		keyrothttp.NewCache(nil, keyrot.DefaultPolicy()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err == nil {
		srv.Close(context.Background())
		t.Fatal("Open on a used port succeeded")
	}
}

// A listener the caller bound is served as given: its port is known
// before the server starts, and Close releases it.
func TestServeCallersListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key, hash, _ := keyrothttp.GenerateAPIKey()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	cache.Publish(fixtures()[0])
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Listen: "ignored:1", Listener: ln,
		Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}}}}, cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	if got, want := srv.URL(), "http://"+ln.Addr().String(); got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	c := &keyrothttp.Client{BaseURL: srv.URL(), APIKey: key}
	if got, err := c.Get(context.Background(), "alice"); err != nil || got.SecretAccessKey != aliceSecret {
		t.Errorf("get alice: %v", err)
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	again, err := net.Listen("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("the port is still held after Close: %v", err)
	}
	again.Close()
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := testkit.Files(t)
	key, hash, _ := keyrothttp.GenerateAPIKey()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	cache.Publish(fixtures()[0])
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{
		Listen: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile,
		Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}}},
	}, cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %q", srv.URL())
	}
	c := &keyrothttp.Client{BaseURL: srv.URL(), APIKey: key, HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	got, err := c.Get(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.SecretAccessKey != aliceSecret {
		t.Errorf("got %v", got)
	}
	// Plain HTTP to the TLS port is refused.
	plain := &keyrothttp.Client{BaseURL: strings.Replace(srv.URL(), "https", "http", 1), APIKey: key}
	if _, err := plain.Get(context.Background(), "alice"); err == nil {
		t.Error("plain HTTP to the TLS listener succeeded")
	}
}

func TestGracefulShutdown(t *testing.T) {
	key, hash, _ := keyrothttp.GenerateAPIKey()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	cache.Publish(fixtures()[0])
	started, release := make(chan struct{}), make(chan struct{})
	// A logger whose first audit write blocks holds the request in flight.
	block := &blockingWriter{started: started, release: release}
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Listen: "127.0.0.1:0", Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}}}},
		cache, keyrothttp.WithLogger(slog.New(slog.NewJSONHandler(block, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	type result struct {
		creds keyrot.Credentials
		err   error
	}
	done := make(chan result, 1)
	go func() {
		c := &keyrothttp.Client{BaseURL: url, APIKey: key}
		cr, err := c.Get(context.Background(), "alice")
		done <- result{cr, err}
	}()
	<-started // the request is being served
	closed := make(chan error, 1)
	go func() { closed <- srv.Close(context.Background()) }()
	// New connections are refused once shutdown began; poll until then.
	for {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			break
		}
		conn.Close()
		runtime.Gosched()
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v with a request in flight", err)
	default:
	}
	close(release)
	r := <-done
	if r.err != nil || r.creds.SecretAccessKey != aliceSecret {
		t.Fatalf("in-flight request: %v %v", r.creds, r.err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// blockingWriter blocks the first write of an audit record until released.
type blockingWriter struct {
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"system":"audit"`)) {
		b.once.Do(func() {
			close(b.started)
			<-b.release
		})
	}
	return len(p), nil
}
