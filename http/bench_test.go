package http_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
)

// BenchmarkCredentialsHit measures the handler for a cache hit, with
// authentication, rate limiting, the audit record (slog JSON, to a
// discarding writer) and metrics on: go test -run '^$' -bench CredentialsHit ./http/
func BenchmarkCredentialsHit(b *testing.B) {
	key, hash, _ := keyrothttp.GenerateAPIKey()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy())
	for _, c := range fixtures() {
		cache.Publish(c)
	}
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{
		Keys:      []keyrothttp.APIKey{{Name: "bench", Hash: hash, Users: []string{"*"}}},
		RateLimit: 1e9,
	}, cache, keyrothttp.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	req := httptest.NewRequest("GET", "/credentials/alice", nil)
	req.Header.Set("X-API-Key", key)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}
