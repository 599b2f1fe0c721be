// Command bare is the baseline of bench/api.sh: a plain net/http handler
// that serves GET /credentials/{user} from bytes read once at start, with
// the same headers as the keyrot API, and nothing else (no authentication,
// logging, metrics or rate limit).
//
//	bare -listen 127.0.0.1:18001 -dir DIR   # DIR/USER.json is USER's body
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:18001", "address to listen on")
	dir := flag.String("dir", ".", "directory of USER.json bodies, as the keyrot API served them")
	flag.Parse()

	files, err := filepath.Glob(filepath.Join(*dir, "*.json"))
	if err != nil {
		return err
	}
	bodies := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		bodies[strings.TrimSuffix(filepath.Base(f), ".json")] = b
	}
	if len(bodies) == 0 {
		return fmt.Errorf("no *.json bodies in %q", *dir)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /credentials/{user}", func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.PathValue("user")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h["Cache-Control"] = []string{"no-store"}
		h["Content-Type"] = []string{"application/json"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		h["X-Keyrot-Cache-Age"] = []string{"0"}
		_, _ = w.Write(body)
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
