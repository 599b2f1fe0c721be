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
// call), and returns its pass report (fleet.PassReport: the JSON `keyrot
// rotate -o json` prints).
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
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/buildinfo"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/logging"
)

// processStart is when the Go runtime handed over to this package: init_ms
// in the "ready" log line is measured from here.
var processStart = time.Now()

func main() {
	if ah, ok, err := newAccountsHandler(context.Background(), options{LookupEnv: os.LookupEnv, Stdout: os.Stdout}); ok {
		// accounts in the config: the scheduler and the worker (accounts.go).
		if err != nil {
			err = keyrot.RedactError(err)
			slog.New(logging.Guard(slog.NewJSONHandler(os.Stdout, nil))).Error("init failed", "system", "lambda", "error", err)
			lambda.Start(func(context.Context, json.RawMessage) (any, error) { return nil, err })
			return
		}
		lambda.Start(ah.invoke)
		return
	}
	h, err := newHandler(context.Background(), options{LookupEnv: os.LookupEnv, Stdout: os.Stdout})
	if err != nil {
		// Every invocation fails with the reason, so the Errors alarm fires
		// and each log stream says what to fix.
		err = keyrot.RedactError(err)
		slog.New(logging.Guard(slog.NewJSONHandler(os.Stdout, nil))).Error("init failed", "system", "lambda", "error", err)
		lambda.Start(func(context.Context, json.RawMessage) (fleet.PassReport, error) { return fleet.PassReport{}, err })
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
	// Stdout receives the log and the EMF records, through one
	// logging.Writer written out at the end of each invocation.
	Stdout io.Writer
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
	out          *logging.Writer
	margin       time.Duration
	functionName string
	now          func() time.Time
	// engineNow is the engine's clock, which times the pass: the wall
	// clock, or the test's.
	engineNow func() time.Time
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
	// The engine's records name their own system (logging.Guard keeps the
	// nearer one).
	out := logging.NewWriter(o.Stdout, logging.WriterOptions{})
	defer out.Flush()
	log := app.NewLogger(out, cfg.Log, false).With("system", "lambda")
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
		out:          out,
		margin:       o.Margin,
		functionName: functionName,
		now:          time.Now,
		engineNow:    time.Now,
	}
	if o.Clock != nil {
		h.engineNow = o.Clock.Now
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

// invoke runs one pass. It returns an error (a failed invocation, counted
// by the Errors alarm) only when the pass could not run at all; users that
// failed are in the summary and the RotationFailures metric.
func (h *handler) invoke(ctx context.Context, event json.RawMessage) (fleet.PassReport, error) {
	// The records of the invocation leave before the function returns: the
	// environment may be frozen right after.
	defer h.out.Flush()
	start := h.engineNow()
	log := h.log
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	var in input
	if len(event) > 0 {
		if err := json.Unmarshal(event, &in); err != nil {
			log.Error("bad invocation event", "error", err)
			return fleet.PassReport{}, keyrot.RedactError(fmt.Errorf("keyrot-lambda: event: %w", err))
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

	res := fleet.NewPassReport(sum, in.DryRun, h.engineNow().Sub(start), stopped)
	if merr := h.emitMetrics(res); merr != nil {
		log.Warn("metrics not written", "error", merr)
	}
	if err != nil {
		log.Error("pass failed", "error", err, "duration_ms", res.DurationMs)
		return res, keyrot.RedactError(fmt.Errorf("keyrot-lambda: pass: %w", err))
	}
	for _, f := range res.Failures() {
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

// emitMetrics writes the pass's metrics as one EMF record.
func (h *handler) emitMetrics(res fleet.PassReport) error {
	return writeEMF(h.out, metricsNamespace, h.now(), map[string]string{"FunctionName": h.functionName}, []Metric{
		{Name: "KeysCreated", Unit: "Count", Value: float64(res.Created)},
		{Name: "KeysDeactivated", Unit: "Count", Value: float64(res.Deactivated)},
		{Name: "KeysDeleted", Unit: "Count", Value: float64(res.Deleted)},
		{Name: "RotationFailures", Unit: "Count", Value: float64(res.Failed)},
		{Name: "Warnings", Unit: "Count", Value: float64(res.Warnings)},
		{Name: "DurationMs", Unit: "Milliseconds", Value: float64(res.DurationMs)},
	})
}
