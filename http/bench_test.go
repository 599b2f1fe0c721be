package http_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/logging"
	"github.com/keyrot/keyrot/mock"
)

// BenchmarkCredentialsHit measures the handler for a cache hit, with
// authentication, rate limiting, the audit record (through the logger
// keyrot runs with: logging.Guard over logging.JSONHandler, onto a
// logging.Writer, onto a discarding writer) and metrics on:
// go test -run '^$' -bench CredentialsHit ./http/
func BenchmarkCredentialsHit(b *testing.B) {
	// The fixtures' keys are current at their own time, not the wall clock's.
	benchmarkCredentials(b, mock.NewClock(t0))
}

// BenchmarkCredentialsHitOverdue is the same an hour after the keys'
// rotation was due (the engine stopped): Expiration moves with the clock.
func BenchmarkCredentialsHitOverdue(b *testing.B) {
	benchmarkCredentials(b, mock.NewClock(t0.Add(time.Hour)))
}

func benchmarkCredentials(b *testing.B, clock keyrot.Clock) {
	key, hash, _ := keyrothttp.GenerateAPIKey()
	out := logging.NewWriter(io.Discard, logging.WriterOptions{})
	defer out.Close()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(clock))
	for _, c := range fixtures() {
		cache.Publish(c)
	}
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{
		Keys:      []keyrothttp.APIKey{{Name: "bench", Hash: hash, Users: []string{"*"}}},
		RateLimit: 1e9,
	}, cache, keyrothttp.WithLogger(slog.New(logging.Guard(logging.NewJSONHandler(out, nil)))))
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
