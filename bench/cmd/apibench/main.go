// Command apibench serves the keyrot API over a warm cache, or a bare
// net/http handler returning the same JSON bytes, for bench/api.sh to
// compare with wrk. It stands in for `keyrot serve` on the sandbox until
// that command exists.
//
//	apibench -mode keyrot -listen 127.0.0.1:18000 -log /tmp/api.log
//	apibench -mode bare   -listen 127.0.0.1:18001
//
// The API key is read from KEYROT_BENCH_API_KEY; only its hash is kept.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "apibench:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "keyrot", "keyrot: the API with auth, audit, access log, metrics and rate limit; bare: a plain handler")
	listen := flag.String("listen", "127.0.0.1:18000", "address to listen on")
	logFile := flag.String("log", os.DevNull, "file for the keyrot API's JSON logs (access and audit)")
	users := flag.Int("users", 50, "managed users in the warm cache")
	flag.Parse()

	policy := keyrot.DefaultPolicy()
	cache := keyrothttp.NewCache(nil, policy)
	now := time.Now().UTC().Truncate(time.Second)
	for i := range *users {
		cache.Publish(keyrot.Credentials{
			UserName:        fmt.Sprintf("bench-user-%d", i),
			AccessKeyID:     fmt.Sprintf("AKIABENCH%011d", i),
			SecretAccessKey: fmt.Sprintf("benchSecretAccessKey/%019d", i),
			CreateDate:      now,
			CurrentSince:    now,
		})
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch *mode {
	case "bare":
		// The same bytes the API serves, built once, as a cache would.
		bodies := map[string][]byte{}
		for _, c := range cache.Current() {
			b, err := json.Marshal(keyrothttp.CredentialsResponse{
				UserName: c.UserName, AccessKeyId: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
				CreateDate: c.CreateDate, NextRotation: c.NextRotation, Expiration: c.Expiration,
			})
			if err != nil {
				return err
			}
			bodies[c.UserName] = append(b, '\n')
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /credentials/{user}", func(w http.ResponseWriter, r *http.Request) {
			body, ok := bodies[r.PathValue("user")]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(body)
		})
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		<-ctx.Done()
		return srv.Shutdown(context.Background())

	case "keyrot":
		key := os.Getenv("KEYROT_BENCH_API_KEY")
		if key == "" {
			return fmt.Errorf("set KEYROT_BENCH_API_KEY")
		}
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		logger := slog.New(slog.NewJSONHandler(f, nil))
		srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{
			Listen: *listen,
			Keys:   []keyrothttp.APIKey{keyrothttp.FullAccessKey("bench", key)},
			// A limit wrk never reaches, so the limiter runs on every request.
			RateLimit: 1e9,
		}, cache, keyrothttp.WithLogger(logger))
		if err != nil {
			return err
		}
		if err := srv.Open(); err != nil {
			return err
		}
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Close(sctx)
	}
	return fmt.Errorf("unknown mode %q", *mode)
}
