// Command keyrot-lambda runs keyrot's rotation engine as an AWS Lambda
// function: built as bootstrap for the provided.al2023 runtime, configured by
// the KEYROT_* environment variables that deploy/key_rotation.yaml sets, and
// invoked every minute by an EventBridge schedule.
//
// The engine is built once per execution environment. Each invocation runs
// one reconcile pass over the managed users, bounded by the function's
// remaining time: it stops starting new steps a safety margin before the
// deadline and lets the step in flight finish. It logs JSON to stdout,
// writes its metrics as CloudWatch Embedded Metric Format records (no API
// call), and returns a summary.
//
// An invocation may carry {"users": [...], "force": true, "dry_run": true}
// to run a pass for some users, rotate them now, or only plan; the
// schedule's events carry none of these and run the normal pass.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/buildinfo"
	"github.com/keyrot/keyrot/internal/config"
)

// processStart is when the Go runtime handed over to this package: init_ms
// in the "ready" log line is measured from here.
var processStart = time.Now()

func main() {
	out := &syncWriter{w: os.Stdout}
	if ah, ok, err := newAccountsHandler(context.Background(), options{LookupEnv: os.LookupEnv, Stdout: out}); ok {
		// accounts in the config: the scheduler and the worker (accounts.go).
		if err != nil {
			fmt.Fprintf(out, "{\"level\":\"ERROR\",\"msg\":\"keyrot-lambda: init failed\",\"error\":%q}\n", err.Error())
			lambda.Start(func(context.Context, json.RawMessage) (any, error) { return nil, err })
			return
		}
		lambda.Start(ah.invoke)
		return
	}
	h, err := newHandler(context.Background(), options{LookupEnv: os.LookupEnv, Stdout: out})
	if err != nil {
		// Every invocation fails with the reason, so the Errors alarm fires
		// and each log stream says what to fix.
		fmt.Fprintf(out, "{\"level\":\"ERROR\",\"msg\":\"keyrot-lambda: init failed\",\"error\":%q}\n", err.Error())
		lambda.Start(func(context.Context, json.RawMessage) (result, error) { return result{}, err })
		return
	}
	lambda.Start(h.invoke)
}

// engine is what the handler needs from the wired app.
type engine interface {
	// ReconcileAll runs one pass; ctx ending stops new steps from starting.
	ReconcileAll(ctx context.Context, opts keyrot.RunOptions) (keyrot.Summary, error)
	// Flush delivers the notifications the pass queued, until ctx is done:
	// a Lambda environment may be frozen or reaped after the invocation.
	Flush(ctx context.Context) error
}

// appEngine adapts *app.App to engine.
type appEngine struct{ app *app.App }

func (e appEngine) ReconcileAll(ctx context.Context, opts keyrot.RunOptions) (keyrot.Summary, error) {
	return e.app.Rotator.ReconcileAll(ctx, opts)
}

func (e appEngine) Flush(ctx context.Context) error { return e.app.Flush(ctx) }

// options are the handler's outside world, injected so tests run it whole.
type options struct {
	LookupEnv func(string) (string, bool)
	Stdout    io.Writer
	// AWS and Clock replace the defaults in tests; Observe sees every event.
	AWS     *aws.Config
	Clock   keyrot.Clock
	Observe func(keyrot.Event)
	// Margin is how long before the function's deadline the pass stops
	// starting new steps (default: the verify timeout plus 20 s, the
	// longest a step can take).
	Margin time.Duration
}

// stepSlack is what a step needs beyond verifying a new key: its handful of
// IAM and Secrets Manager calls, and the notifications' flush.
const stepSlack = 20 * time.Second

// scheduleLateness is how late a step may run under the stack's
// rate(1 minute) schedule: a step due just after an invocation waits for
// the next.
const scheduleLateness = time.Minute

// metricsNamespace is the CloudWatch namespace of keyrot's metrics.
const metricsNamespace = "keyrot"

// handler runs one reconcile pass per invocation.
type handler struct {
	engine       engine
	log          *slog.Logger
	out          io.Writer
	margin       time.Duration
	functionName string
	now          func() time.Time
}

// newHandler reads the config from the environment and builds the engine.
func newHandler(ctx context.Context, o options) (*handler, error) {
	// The engine: a user selection and email (the same rules as keyrot rotate).
	cfg, src, err := config.FromEnv(o.LookupEnv, config.NeedUsers, config.NeedMail)
	if err != nil {
		return nil, fmt.Errorf("keyrot-lambda: %w", err)
	}
	// The default API URL is the daemon's local one; this function serves no
	// API itself (the stack's API function does, and the stack passes its
	// URL), so without KEYROT_API_URL the emails leave the API instructions out.
	if !src.Set("notify.api_url") {
		cfg.Notify.APIURL = ""
	}
	// A step due just after an invocation waits for the next one: the
	// one-minute schedule's lateness is part of the timings consumers get.
	if !src.Set("rotation.step_lateness") {
		cfg.Rotation.StepLateness = config.Duration(scheduleLateness)
	}
	// Lambda's log is not a terminal; JSON unless the config says text.
	log := app.NewLogger(o.Stdout, cfg.Log, false).With("system", "lambda")
	functionName, _ := o.LookupEnv("AWS_LAMBDA_FUNCTION_NAME")
	if functionName == "" {
		functionName = "keyrot"
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Clock: o.Clock, AWS: o.AWS, Observe: o.Observe, PassEvery: scheduleLateness, LookupEnv: o.LookupEnv})
	if err != nil {
		return nil, fmt.Errorf("keyrot-lambda: build engine: %w", err)
	}
	h := &handler{
		engine:       appEngine{a},
		log:          log,
		out:          o.Stdout,
		margin:       o.Margin,
		functionName: functionName,
		now:          time.Now,
	}
	if h.margin <= 0 {
		// A step once started runs to its end (up to the verify timeout,
		// riding out IAM's propagation delay): stop starting them early
		// enough that the last one ends before Lambda stops the function.
		h.margin = time.Duration(cfg.Rotation.VerifyTimeout) + stepSlack
	}
	log.Info("ready", "version", buildinfo.Read().Version, "init_ms", time.Since(processStart).Milliseconds(),
		"users", cfg.Users.Names, "user_tag", cfg.Users.Tag, "path_prefix", cfg.Users.PathPrefix,
		"rotate_every", keyrot.FormatDuration(time.Duration(cfg.Rotation.RotateEvery)),
		"deactivate_after", keyrot.FormatDuration(time.Duration(cfg.Rotation.DeactivateAfter)),
		"delete_after", keyrot.FormatDuration(time.Duration(cfg.Rotation.DeleteAfter)),
		"secret_prefix", cfg.Secrets.Prefix, "notify_via", cfg.Notify.Via)
	return h, nil
}

// input is what an invocation may ask for. The schedule's events match
// none of these fields, which is the normal pass.
type input struct {
	Users  []string `json:"users,omitempty"`
	Force  bool     `json:"force,omitempty"`
	DryRun bool     `json:"dry_run,omitempty"`
}

// result is the invocation's summary. It names users and key ids, never a
// secret.
type result struct {
	Users       int `json:"users"`
	Exempt      int `json:"exempt"`
	Created     int `json:"created"`
	Deactivated int `json:"deactivated"`
	Deleted     int `json:"deleted"`
	Warnings    int `json:"warnings"`
	Failed      int `json:"failed"`
	// Deferred counts the users the pass had no time left for; the next
	// invocation starts with the most overdue of them.
	Deferred int `json:"deferred,omitempty"`
	// Bulk counts the users planned from bulk data alone (bulk_observe).
	Bulk       int    `json:"bulk,omitempty"`
	NextAt     string `json:"next_at,omitempty"`
	DurationMs int64  `json:"duration_ms"`
	// Stopped reports that the pass reached its deadline and left steps for
	// the next invocation.
	Stopped  bool         `json:"stopped,omitempty"`
	DryRun   bool         `json:"dry_run,omitempty"`
	Results  []userResult `json:"results,omitempty"`
	Failures []failure    `json:"failures,omitempty"`
}

// userResult is what the pass did for one user.
type userResult struct {
	User     string   `json:"user"`
	Current  string   `json:"current_key_id,omitempty"`
	Done     []string `json:"done,omitempty"`
	Planned  []string `json:"planned,omitempty"`
	Next     string   `json:"next,omitempty"`
	NextAt   string   `json:"next_at,omitempty"`
	Exempt   string   `json:"exempt,omitempty"`
	Missing  bool     `json:"missing,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// failure is one user the pass could not bring up to date.
type failure struct {
	User  string `json:"user"`
	Error string `json:"error"`
}

// invoke runs one pass. It returns an error (a failed invocation, counted
// by the Errors alarm) only when the pass could not run at all; users that
// failed are in the summary and the RotationFailures metric.
func (h *handler) invoke(ctx context.Context, event json.RawMessage) (result, error) {
	start := h.now()
	log := h.log
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	var in input
	if len(event) > 0 {
		if err := json.Unmarshal(event, &in); err != nil {
			log.Error("bad invocation event", "error", err)
			return result{}, fmt.Errorf("keyrot-lambda: event: %w", err)
		}
	}

	passCtx, cancel := h.passContext(ctx)
	defer cancel()
	sum, err := h.engine.ReconcileAll(passCtx, keyrot.RunOptions{Users: in.Users, Force: in.Force, DryRun: in.DryRun})
	stopped := passCtx.Err() != nil && ctx.Err() == nil

	// The notifications the pass queued go out before the function returns,
	// in the time the margin left, short of the deadline: a storm queues
	// more than the send rate lets out in one invocation, and the rest stay
	// queued for the next (in this environment) rather than time it out.
	flushCtx, cancelFlush := h.flushContext(ctx)
	if ferr := h.engine.Flush(flushCtx); ferr != nil {
		log.Warn("notifications not all delivered", "error", ferr)
	}
	cancelFlush()

	res := summarize(sum, in.DryRun)
	res.Stopped = stopped
	res.DurationMs = h.now().Sub(start).Milliseconds()
	if merr := h.emitMetrics(res); merr != nil {
		log.Warn("metrics not written", "error", merr)
	}
	if err != nil {
		log.Error("pass failed", "error", err, "duration_ms", res.DurationMs)
		return res, fmt.Errorf("keyrot-lambda: pass: %w", err)
	}
	for _, f := range res.Failures {
		log.Error("user not rotated", "user", f.User, "error", f.Error)
	}
	log.Info("pass done", "users", res.Users, "created", res.Created, "deactivated", res.Deactivated,
		"deleted", res.Deleted, "warnings", res.Warnings, "failed", res.Failed, "deferred", res.Deferred, "bulk", res.Bulk,
		"stopped", res.Stopped, "next_at", res.NextAt, "duration_ms", res.DurationMs)
	return res, nil
}

// passContext ends margin before the function's deadline (or half the time
// left, if that is less), so that the step in flight can finish.
func (h *handler) passContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return passContext(ctx, h.now(), h.margin)
}

// passContext ends margin before ctx's deadline (or half the time left,
// if that is less).
func passContext(ctx context.Context, now time.Time, margin time.Duration) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	left := deadline.Sub(now)
	return context.WithDeadline(ctx, deadline.Add(-min(margin, left/2)))
}

// returnReserve is the time kept after the notifications' flush to write
// the metrics and the result before the function's deadline.
const returnReserve = 2 * time.Second

// flushContext ends returnReserve before the function's deadline.
func (h *handler) flushContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline.Add(-returnReserve))
}

// summarize turns the engine's summary into the invocation's result.
func summarize(sum keyrot.Summary, dryRun bool) result {
	res := result{
		Users: sum.Users, Exempt: sum.Exempt, Created: sum.Created, Deactivated: sum.Deactivated,
		Deleted: sum.Deleted, Warnings: sum.Warnings, Failed: sum.Failed, DryRun: dryRun,
		Deferred: sum.Deferred, Bulk: sum.Bulk,
		NextAt: formatTime(sum.NextAt),
	}
	for _, r := range sum.Results {
		u := userResult{User: r.User, Next: r.Next, NextAt: formatTime(r.NextAt), Exempt: r.ExemptReason, Missing: r.Missing}
		if r.Current != nil {
			u.Current = r.Current.ID
		}
		for _, s := range r.Done {
			u.Done = append(u.Done, stepString(s))
		}
		if dryRun {
			for _, s := range r.Planned {
				u.Planned = append(u.Planned, stepString(s))
			}
		}
		for _, w := range r.Warnings {
			u.Warnings = append(u.Warnings, w.Summary)
		}
		res.Results = append(res.Results, u)
		if r.Err != nil {
			res.Failures = append(res.Failures, failure{User: r.User, Error: r.Err.Error()})
		}
	}
	return res
}

func stepString(s keyrot.Step) string {
	if s.KeyID == "" {
		return string(s.Kind)
	}
	return string(s.Kind) + " " + s.KeyID
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// emitMetrics writes the pass's metrics as one EMF record.
func (h *handler) emitMetrics(res result) error {
	return writeEMF(h.out, metricsNamespace, h.now(), map[string]string{"FunctionName": h.functionName}, []Metric{
		{Name: "KeysCreated", Unit: "Count", Value: float64(res.Created)},
		{Name: "KeysDeactivated", Unit: "Count", Value: float64(res.Deactivated)},
		{Name: "KeysDeleted", Unit: "Count", Value: float64(res.Deleted)},
		{Name: "RotationFailures", Unit: "Count", Value: float64(res.Failed)},
		{Name: "Warnings", Unit: "Count", Value: float64(res.Warnings)},
		{Name: "DurationMs", Unit: "Milliseconds", Value: float64(res.DurationMs)},
	})
}

// syncWriter serialises writes, so that log lines and EMF records written
// from several goroutines never interleave within a line.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
