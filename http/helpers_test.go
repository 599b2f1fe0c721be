package http_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/prometheus/client_golang/prometheus"
)

// t0 is the fixed time the fixtures are created at.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Real-looking secrets, so a leak of any of them is caught verbatim.
const (
	aliceSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYa1"
	bobSecret   = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEYb2"
	ciSecret    = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/ci3"
)

func fixtures() []keyrot.Credentials {
	return []keyrot.Credentials{
		{UserName: "alice", AccessKeyID: "AKIAALICE00000000001", SecretAccessKey: aliceSecret, CreateDate: t0, CurrentSince: t0, Generation: 1},
		{UserName: "bob", AccessKeyID: "AKIABOB0000000000002", SecretAccessKey: bobSecret, CreateDate: t0.Add(time.Minute), CurrentSince: t0.Add(time.Minute), Generation: 1},
		{UserName: "ci-deploy", AccessKeyID: "AKIACIDEPLOY00000003", SecretAccessKey: ciSecret, CreateDate: t0, CurrentSince: t0, Generation: 3},
	}
}

func secrets() []string { return []string{aliceSecret, bobSecret, ciSecret} }

// apiKeys are the test keys: their plaintext, and the config holding only hashes.
type apiKeys struct {
	admin, ci, reader, nolist string
}

// env is a running API over a warm cache.
type env struct {
	srv   *keyrothttp.Server
	url   string
	cache *keyrothttp.Cache
	keys  apiKeys
	logs  *testkit.Buffer
	clock *mock.Clock
	reg   *prometheus.Registry
}

type envOption func(*keyrothttp.ServerConfig)

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	return newEnvSource(t, nil, opts...)
}

// newEnvSource is newEnv with a cache that loads from src (and is not
// loaded yet) instead of one warmed with the fixtures.
func newEnvSource(t testing.TB, src keyrothttp.Source, opts ...envOption) *env {
	t.Helper()
	return newEnvServer(t, src, nil, opts...)
}

// newEnvServer is newEnvSource with more server options.
func newEnvServer(t testing.TB, src keyrothttp.Source, serverOpts []keyrothttp.ServerOption, opts ...envOption) *env {
	t.Helper()
	e := &env{logs: &testkit.Buffer{}, clock: mock.NewClock(t0.Add(2 * time.Minute)), reg: prometheus.NewRegistry()}
	var hashes [4]string
	for i, p := range []*string{&e.keys.admin, &e.keys.ci, &e.keys.reader, &e.keys.nolist} {
		k, h, err := keyrothttp.GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		*p, hashes[i] = k, h
	}
	cfg := keyrothttp.ServerConfig{
		Listen: "127.0.0.1:0",
		Keys: []keyrothttp.APIKey{
			{Name: "admin", Hash: hashes[0], Users: []string{"*"}, List: true},
			{Name: "ci", Hash: hashes[1], Users: []string{"ci-*"}, List: true},
			{Name: "reader", Hash: hashes[2], Users: []string{"alice", "ghost"}},
			{Name: "nolist", Hash: hashes[3], Users: []string{"bob"}},
		},
		RateLimit: -1,
		Registry:  e.reg,
	}
	for _, o := range opts {
		o(&cfg)
	}
	e.cache = keyrothttp.NewCache(src, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(e.clock))
	if src == nil {
		for _, c := range fixtures() {
			e.cache.Publish(c)
		}
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := keyrothttp.NewServer(cfg, e.cache, append([]keyrothttp.ServerOption{keyrothttp.WithLogger(logger), keyrothttp.WithClock(e.clock)}, serverOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e.url = ts.URL
	return e
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request with the given headers ("Name: value").
func (e *env) do(t testing.TB, method, path string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

func xkey(k string) string   { return "X-API-Key: " + k }
func bearer(k string) string { return "Authorization: Bearer " + k }

// fakeSource is a keyrothttp.Source over a list of credentials: each one's
// pointer is derived from it, and reads can be made to fail per user.
type fakeSource struct {
	mu      sync.Mutex
	creds   []keyrot.Credentials
	err     error            // fails Pointers
	readErr map[string]error // fails ReadCurrent for these users
	read    []string         // the users ReadCurrent was asked for, in order
	// beforeRead, if set, runs at the start of ReadCurrent (without the lock).
	beforeRead func()
}

func (f *fakeSource) set(creds []keyrot.Credentials, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creds, f.err = creds, err
}

func (f *fakeSource) failRead(user string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.readErr == nil {
		f.readErr = map[string]error{}
	}
	if err == nil {
		delete(f.readErr, user)
		return
	}
	f.readErr[user] = err
}

// reads returns and forgets the users read so far.
func (f *fakeSource) reads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.read
	f.read = nil
	return r
}

func (f *fakeSource) Pointers(context.Context) ([]keyrot.KeyPointer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	ptrs := make([]keyrot.KeyPointer, len(f.creds))
	for i, c := range f.creds {
		ptrs[i] = keyrot.KeyPointer{UserName: c.UserName, Secret: "iam-key-rotation/" + c.UserName, KeyID: c.AccessKeyID, Generation: c.Generation, Since: c.CurrentSince}
	}
	return ptrs, nil
}

func (f *fakeSource) ReadCurrent(_ context.Context, ptrs []keyrot.KeyPointer) ([]keyrot.Credentials, map[string]error) {
	if f.beforeRead != nil {
		f.beforeRead()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []keyrot.Credentials
	failed := map[string]error{}
	for _, p := range ptrs {
		f.read = append(f.read, p.UserName)
		if err := f.readErr[p.UserName]; err != nil {
			failed[p.UserName] = err
			continue
		}
		for _, c := range f.creds {
			if c.UserName == p.UserName && c.AccessKeyID == p.KeyID {
				out = append(out, c)
			}
		}
	}
	return out, failed
}

// handlerEnv is a server on a mock.Clock called in-process, so that a test
// drives time and picks each request's client address.
type handlerEnv struct {
	srv   *keyrothttp.Server
	clock *mock.Clock
	logs  *testkit.Buffer
	reg   *prometheus.Registry
}

// newHandlerEnv serves the fixtures with keys; every request has its own
// rate limit out of the way unless an option sets one.
func newHandlerEnv(t testing.TB, keys []keyrothttp.APIKey, opts ...envOption) *handlerEnv {
	t.Helper()
	h := &handlerEnv{clock: mock.NewClock(t0.Add(2 * time.Minute)), logs: &testkit.Buffer{}, reg: prometheus.NewRegistry()}
	cfg := keyrothttp.ServerConfig{Keys: keys, RateLimit: -1, Registry: h.reg}
	for _, o := range opts {
		o(&cfg)
	}
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	for _, c := range fixtures() {
		cache.Publish(c)
	}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := keyrothttp.NewServer(cfg, cache, keyrothttp.WithLogger(logger), keyrothttp.WithClock(h.clock))
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	return h
}

// get serves GET path from the client address remote ("ip:port") with the
// given headers ("Name: value").
func (h *handlerEnv) get(t testing.TB, path, remote string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = remote
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ": ")
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(w, req)
	return w
}

// newKey returns a fresh API key and its config entry for users.
func newKey(t testing.TB, name string, users ...string) (string, keyrothttp.APIKey) {
	t.Helper()
	k, hash, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	return k, keyrothttp.APIKey{Name: name, Hash: hash, Users: users, List: true}
}
