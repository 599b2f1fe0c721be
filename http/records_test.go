package http_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/testkit"
)

func jsonLines(t *testing.T, s *testkit.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(s.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		delete(m, "time")
		delete(m, "duration")
		out = append(out, m)
	}
	return out
}

// TestRecordWriterMatchesSlog: the hand-encoded records say exactly what
// slog's JSON handler would have written, for every kind of request.
func TestRecordWriterMatchesSlog(t *testing.T) {
	key, hash, _ := keyrothttp.GenerateAPIKey()
	now := time.Now()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	cache.Publish(keyrot.Credentials{UserName: "ci-bot", AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", CreateDate: now, CurrentSince: now})
	newServer := func(opts ...keyrothttp.ServerOption) http.Handler {
		srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "ci \"quoted\" é", Hash: hash, Users: []string{"ci-*"}, List: true}}, RateLimit: -1}, cache, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return srv.Handler()
	}
	var viaSlog, viaWriter testkit.Buffer
	a := newServer(keyrothttp.WithLogger(slog.New(slog.NewJSONHandler(&viaSlog, nil))))
	b := newServer(keyrothttp.WithLogger(slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))), keyrothttp.WithRecordWriter(&viaWriter))
	requests := []struct{ path, key string }{
		{"/credentials/ci-bot", key},
		{"/credentials/ci-bot?format=env", key},
		{"/credentials/other", key},
		{"/credentials/ci-bot", "wrong"},
		{"/credentials/%22%0a%ff", key},
		{"/credentials", key},
		{"/healthz", ""},
		{"/nope", ""},
	}
	for _, rq := range requests {
		for _, h := range []http.Handler{a, b} {
			req := httptest.NewRequest("GET", rq.path, nil)
			req.RemoteAddr = "192.0.2.1:1234"
			if rq.key != "" {
				req.Header.Set("X-API-Key", rq.key)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	want, got := jsonLines(t, &viaSlog), jsonLines(t, &viaWriter)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		wj, _ := json.Marshal(want[i])
		gj, _ := json.Marshal(got[i])
		if !bytes.Equal(wj, gj) {
			t.Errorf("record %d:\n got %s\nwant %s", i, gj, wj)
		}
	}
}
