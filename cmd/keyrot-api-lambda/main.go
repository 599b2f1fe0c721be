// Command keyrot-api-lambda serves keyrot's REST API as an AWS Lambda
// function: built as bootstrap for the provided.al2023 runtime, behind a
// Lambda function URL (or an API Gateway HTTP API, payload format 2.0), and
// configured by the same KEYROT_* environment variables as `keyrot serve`.
//
// It serves the handler `keyrot serve` serves (package http), so the routes,
// the API-key check, the scopes, the audit records and the response headers
// are the same. What differs is the cache's refresh: a Lambda environment is
// frozen between invocations, so no background goroutine can keep the cache
// fresh. Instead the cache is loaded at init and reloaded, with the API keys
// kept in api.keys_secret, by the first request that finds it older than
// api.refresh (default 30 s): at most one request per refresh interval and
// execution environment waits for Secrets Manager.
//
// /metrics serves nothing here: each execution environment would count
// only its own requests, and a function URL is public. Lambda's own
// CloudWatch metrics and the audit records in the log group stand in.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/buildinfo"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/logging"
)

// processStart is when the Go runtime handed over to this package: init_ms
// in the "ready" log line is measured from here.
var processStart = time.Now()

func main() {
	h, err := newHandler(context.Background(), options{LookupEnv: os.LookupEnv, Stdout: os.Stdout})
	if err != nil {
		// Every invocation fails with the reason (a 502 to the caller), so
		// the log stream says what to fix.
		err = keyrot.RedactError(err)
		slog.New(logging.Guard(slog.NewJSONHandler(os.Stdout, nil))).Error("init failed", "system", "api-lambda", "error", err)
		lambda.Start(func(context.Context, events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
			return events.LambdaFunctionURLResponse{}, err
		})
		return
	}
	lambda.Start(h.invoke)
}

// options are the handler's outside world, injected so tests run it whole.
type options struct {
	LookupEnv func(string) (string, bool)
	// Stdout receives the log (audit records included), through one
	// logging.Writer written out at the end of each invocation.
	Stdout io.Writer
	// AWS and Clock replace the defaults in tests.
	AWS   *aws.Config
	Clock keyrot.Clock
}

// notReadyRetry is how soon a request retries a cache that never loaded
// (Secrets Manager failed at init): sooner than the refresh interval, since
// until then every read answers 503.
const notReadyRetry = time.Second

// handler serves one HTTP request per invocation.
type handler struct {
	api   *app.API
	http  http.Handler
	log   *slog.Logger
	out   *logging.Writer
	clock keyrot.Clock
	every time.Duration

	mu          sync.Mutex // one refresh at a time
	lastRefresh time.Time
}

// newHandler reads the config from the environment, reads the API keys and
// loads the cache.
func newHandler(ctx context.Context, o options) (*handler, error) {
	// The API alone: no user selection, no email.
	cfg, _, err := config.FromEnv(o.LookupEnv, config.NeedAPI)
	if err != nil {
		return nil, fmt.Errorf("keyrot-api-lambda: %w", err)
	}
	out := logging.NewWriter(o.Stdout, logging.WriterOptions{})
	defer out.Flush()
	log := app.NewLogger(out, cfg.Log, false)
	var awsCfg aws.Config
	if o.AWS != nil {
		awsCfg = *o.AWS
	} else if awsCfg, err = app.LoadAWS(ctx, cfg.Region); err != nil {
		return nil, fmt.Errorf("keyrot-api-lambda: %w", err)
	}
	clock := o.Clock
	if clock == nil {
		clock = keyrot.SystemClock{}
	}
	api, err := app.NewAPI(cfg, app.APIOptions{Logger: log, Clock: clock, Serve: true, Lambda: true})
	if err != nil {
		return nil, fmt.Errorf("keyrot-api-lambda: %w", err)
	}
	if _, err := api.Open(ctx, app.APIDeps{Store: app.NewStore(awsCfg, cfg.Secrets.Prefix, "")}); err != nil {
		return nil, fmt.Errorf("keyrot-api-lambda: %w", err)
	}
	h := &handler{api: api, http: api.Handler(), log: log, out: out, clock: clock, every: time.Duration(cfg.API.Refresh)}
	h.lastRefresh = clock.Now()
	log.Info("ready", "system", "api-lambda", "version", buildinfo.Read().Version,
		"init_ms", time.Since(processStart).Milliseconds(),
		"users", len(api.Cache().Current()), "secret_prefix", cfg.Secrets.Prefix, "refresh", h.every.String())
	return h, nil
}

// invoke serves one request event.
func (h *handler) invoke(ctx context.Context, ev events.LambdaFunctionURLRequest) (events.LambdaFunctionURLResponse, error) {
	// The request's records leave before the function returns: the
	// environment may be frozen right after.
	defer h.out.Flush()
	h.refresh(ctx)
	r, err := newRequest(ctx, ev)
	if err != nil {
		log := h.log
		if lc, ok := lambdacontext.FromContext(ctx); ok {
			log = log.With("request_id", lc.AwsRequestID)
		}
		log.Error("bad request event", "system", "api-lambda", "error", err)
		return events.LambdaFunctionURLResponse{}, keyrot.RedactError(err)
	}
	w := newResponseWriter()
	h.http.ServeHTTP(w, r)
	return w.response(r.Method), nil
}

// refresh reloads the cache and the API keys once they are older than the
// refresh interval (sooner while the cache never loaded). A failed reload
// keeps what is there, as `keyrot serve` does.
func (h *handler) refresh(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	due := h.every
	if !h.api.Cache().Ready() {
		due = min(due, notReadyRetry)
	}
	now := h.clock.Now()
	if now.Sub(h.lastRefresh) < due {
		return
	}
	h.lastRefresh = now
	h.api.Reload(ctx)
}
