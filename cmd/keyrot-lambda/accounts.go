package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/buildinfo"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/logging"
)

// With accounts in the config, the function has two roles, told apart by
// the event: the schedule's event makes it the scheduler, which lists the
// accounts and sends one SQS message per account; an SQS event makes it
// the worker, which runs each message's account pass and reports the
// accounts that failed as batch item failures, so that SQS retries only
// those (and moves what keeps failing to the dead-letter queue). The stack
// deploys it twice, with a role each (deploy/organization.yaml).

// queueURLEnv names the queue the scheduler sends to.
const queueURLEnv = "KEYROT_QUEUE_URL"

// sqsAPI is the part of the SQS client the scheduler calls.
type sqsAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// accountEngine is what the account handler needs from app.Accounts.
type accountEngine interface {
	List(ctx context.Context) ([]app.Account, error)
	ReconcileAccount(ctx context.Context, acct app.Account, opts keyrot.RunOptions) app.AccountResult
	Flush(ctx context.Context) error
}

// accountsHandler is the scheduler and the worker.
type accountsHandler struct {
	engine      accountEngine
	sqs         sqsAPI
	queueURL    string
	ids         []string // accounts.ids: the only accounts a message may name, when set
	concurrency int
	log         *slog.Logger
	out         *logging.Writer
	margin      time.Duration
	function    string
	now         func() time.Time
}

// accountMessage is the body of one account's SQS message.
type accountMessage struct {
	Account string `json:"account"`
	Name    string `json:"name,omitempty"`
}

// scheduleResult is the scheduler's summary.
type scheduleResult struct {
	Accounts int      `json:"accounts"`
	Queued   int      `json:"queued"`
	IDs      []string `json:"ids,omitempty"`
}

// sqsBatch is SQS's limit of messages per SendMessageBatch.
const sqsBatch = 10

// newAccountsHandler builds the handler when the config selects accounts;
// ok is false when it does not (the function rotates its own account).
func newAccountsHandler(ctx context.Context, o options) (h *accountsHandler, ok bool, err error) {
	cfg, src, err := config.FromEnv(o.LookupEnv, config.NeedUsers, config.NeedMail)
	if err != nil || !cfg.Accounts.Enabled() {
		return nil, false, nil // newHandler reports a bad config
	}
	if !src.Set("notify.api_url") {
		cfg.Notify.APIURL = ""
	}
	// Each account's steps wait for the next scheduled pass.
	if !src.Set("rotation.step_lateness") {
		cfg.Rotation.StepLateness = config.Duration(scheduleLateness)
	}
	// One writer for the log and the EMF records, written out at the end
	// of each invocation (the environment may be frozen right after).
	out := logging.NewWriter(o.Stdout, logging.WriterOptions{})
	defer out.Flush()
	log := app.NewLogger(out, cfg.Log, false).With("system", "lambda")
	accts, err := app.NewAccounts(ctx, cfg, app.Options{Logger: log, Clock: o.Clock, AWS: o.AWS, Observe: o.Observe, PassEvery: scheduleLateness, LookupEnv: o.LookupEnv})
	if err != nil {
		return nil, true, fmt.Errorf("keyrot-lambda: build engine: %w", err)
	}
	function, _ := o.LookupEnv("AWS_LAMBDA_FUNCTION_NAME")
	h = &accountsHandler{engine: accts, ids: cfg.Accounts.IDs, concurrency: cfg.Accounts.Concurrency, log: log, out: out,
		margin: o.Margin, function: function, now: time.Now}
	if h.margin <= 0 {
		h.margin = time.Duration(cfg.Rotation.VerifyTimeout) + stepSlack
	}
	if h.function == "" {
		h.function = "keyrot"
	}
	if url, _ := o.LookupEnv(queueURLEnv); url != "" {
		h.queueURL = url
		awsCfg := o.AWS
		if awsCfg == nil {
			c, err := app.LoadAWS(ctx, cfg.Region)
			if err != nil {
				return nil, true, err
			}
			awsCfg = &c
		}
		h.sqs = sqs.NewFromConfig(*awsCfg)
	}
	log.Info("ready", "version", buildinfo.Read().Version, "init_ms", time.Since(processStart).Milliseconds(),
		"mode", map[bool]string{true: "scheduler and worker", false: "worker"}[h.sqs != nil],
		"role", cfg.Accounts.Role, "organization", cfg.Accounts.Organization, "ids", cfg.Accounts.IDs, "users", cfg.Users.Names, "user_tag", cfg.Users.Tag)
	return h, true, nil
}

// invoke tells the worker's SQS event from the scheduler's event.
func (h *accountsHandler) invoke(ctx context.Context, event json.RawMessage) (any, error) {
	defer h.out.Flush()
	var probe struct {
		Records []struct {
			EventSource string `json:"eventSource"`
		} `json:"Records"`
	}
	_ = json.Unmarshal(event, &probe) // anything else is the schedule's event
	if len(probe.Records) > 0 && probe.Records[0].EventSource == "aws:sqs" {
		var in events.SQSEvent
		if err := json.Unmarshal(event, &in); err != nil {
			return nil, fmt.Errorf("keyrot-lambda: SQS event: %w", err)
		}
		return h.work(ctx, in)
	}
	return h.schedule(ctx)
}

// errNoQueue: the scheduler was invoked without a queue to send to.
var errNoQueue = errors.New("keyrot-lambda: no queue: set " + queueURLEnv + " on the scheduler function")

// schedule lists the accounts and sends one message per account.
func (h *accountsHandler) schedule(ctx context.Context) (scheduleResult, error) {
	if h.sqs == nil {
		return scheduleResult{}, errNoQueue
	}
	accts, err := h.engine.List(ctx)
	if err != nil {
		h.log.Error("accounts not listed", "error", err)
		return scheduleResult{}, fmt.Errorf("keyrot-lambda: %w", err)
	}
	res := scheduleResult{Accounts: len(accts)}
	var errs []error
	at := h.now()
	for batch := range slices.Chunk(accts, sqsBatch) {
		queued, err := h.send(ctx, batch, at)
		res.Queued += len(queued)
		res.IDs = append(res.IDs, queued...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	h.metrics([]Metric{{Name: "AccountsQueued", Unit: "Count", Value: float64(res.Queued)}})
	if err := errors.Join(errs...); err != nil {
		h.log.Error("accounts not all queued", "accounts", res.Accounts, "queued", res.Queued, "error", err)
		return res, fmt.Errorf("keyrot-lambda: queue accounts: %w", err)
	}
	h.log.Info("accounts queued", "accounts", res.Accounts, "queued", res.Queued)
	return res, nil
}

// send queues one batch, sending again once the entries SQS failed.
func (h *accountsHandler) send(ctx context.Context, batch []app.Account, at time.Time) (queued []string, err error) {
	pending := map[string]app.Account{}
	for i, a := range batch {
		pending[strconv.Itoa(i)] = a
	}
	for attempt := range 2 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for id, a := range pending {
			body, _ := json.Marshal(accountMessage{Account: a.ID, Name: a.Name})
			e := sqstypes.SendMessageBatchRequestEntry{Id: aws.String(id), MessageBody: aws.String(string(body))}
			if strings.HasSuffix(h.queueURL, ".fifo") {
				// One group per account: SQS hands an account's messages
				// to one worker at a time, so two passes never work on one
				// account at once. Each schedule's message is its own.
				e.MessageGroupId = aws.String(a.ID)
				e.MessageDeduplicationId = aws.String(a.ID + "-" + strconv.FormatInt(at.Unix(), 10))
			}
			entries = append(entries, e)
		}
		slices.SortFunc(entries, func(a, b sqstypes.SendMessageBatchRequestEntry) int { return strings.Compare(*a.Id, *b.Id) })
		out, err := h.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(h.queueURL), Entries: entries})
		if err != nil {
			return queued, fmt.Errorf("send %d accounts: %w", len(entries), err)
		}
		for _, ok := range out.Successful {
			queued = append(queued, pending[aws.ToString(ok.Id)].ID)
			delete(pending, aws.ToString(ok.Id))
		}
		if len(pending) == 0 {
			return queued, nil
		}
		if attempt == 1 {
			var failed []error
			for _, f := range out.Failed {
				failed = append(failed, fmt.Errorf("account %s: %s: %s", pending[aws.ToString(f.Id)].ID, aws.ToString(f.Code), aws.ToString(f.Message)))
			}
			return queued, errors.Join(failed...)
		}
	}
	return queued, nil
}

// workResult is one message's account pass.
type workResult struct {
	messageID string
	account   string
	res       app.AccountResult
	err       error
}

var accountIDRE = regexp.MustCompile(`^[0-9]{12}$`)

// work runs the pass of each message's account, at most
// accounts.concurrency at once, and returns the messages whose account
// could not be worked in as batch item failures. A user failing inside an
// account is the account's own incident (reported by the rotator), not a
// reason to run the whole account again.
func (h *accountsHandler) work(ctx context.Context, in events.SQSEvent) (events.SQSEventResponse, error) {
	start := h.now()
	log := h.log
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		log = log.With("request_id", lc.AwsRequestID)
	}
	passCtx, cancel := passContext(ctx, h.now(), h.margin)
	defer cancel()
	results := make([]workResult, len(in.Records))
	g := new(errgroup.Group)
	g.SetLimit(h.concurrency)
	for i, rec := range in.Records {
		g.Go(func() error {
			r := workResult{messageID: rec.MessageId}
			var msg accountMessage
			switch err := json.Unmarshal([]byte(rec.Body), &msg); {
			case err != nil:
				r.err = fmt.Errorf("message %s: not an account message: %w", rec.MessageId, err)
			case !accountIDRE.MatchString(msg.Account):
				r.err = fmt.Errorf("message %s: account %q is not 12 digits", rec.MessageId, msg.Account)
			case len(h.ids) > 0 && !slices.Contains(h.ids, msg.Account):
				r.err = fmt.Errorf("message %s: account %s is not in accounts.ids", rec.MessageId, msg.Account)
			default:
				r.account = msg.Account
				r.res = h.engine.ReconcileAccount(passCtx, app.Account{ID: msg.Account, Name: msg.Name}, keyrot.RunOptions{})
				r.err = r.res.Err
			}
			results[i] = r
			return nil
		})
	}
	_ = g.Wait() // each message's outcome is in its result
	if err := h.engine.Flush(ctx); err != nil {
		log.Warn("notifications not all delivered", "error", err)
	}
	var resp events.SQSEventResponse
	var created, failedUsers, failedAccounts int
	for _, r := range results {
		s := r.res.Summary
		created += s.Created
		failedUsers += s.Failed
		if r.err != nil {
			failedAccounts++
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.messageID})
			if r.account == "" {
				log.Error("bad message", "message_id", r.messageID, "error", r.err)
			} else {
				// The incident is logged at error once, by the engine; SQS
				// retries the message, and the dead-letter queue keeps it if
				// it keeps failing.
				log.Warn("account pass failed", "account", r.account, "message_id", r.messageID, "error", r.err)
			}
			continue
		}
		log.Info("account pass done", "account", r.account, "users", s.Users, "created", s.Created, "deactivated", s.Deactivated,
			"deleted", s.Deleted, "warnings", s.Warnings, "failed", s.Failed, "deferred", s.Deferred)
	}
	ms := h.now().Sub(start).Milliseconds()
	// Per-account figures are in the log lines above; the metrics stay
	// per function, so a large organization does not make a series per account.
	h.metrics([]Metric{
		{Name: "KeysCreated", Unit: "Count", Value: float64(created)},
		{Name: "RotationFailures", Unit: "Count", Value: float64(failedUsers)},
		{Name: "AccountFailures", Unit: "Count", Value: float64(failedAccounts)},
		{Name: "DurationMs", Unit: "Milliseconds", Value: float64(ms)},
	})
	log.Info("batch done", "messages", len(in.Records), "failed_accounts", failedAccounts, "duration_ms", ms)
	return resp, nil
}

// metrics writes one EMF record.
func (h *accountsHandler) metrics(ms []Metric) {
	if err := writeEMF(h.out, metricsNamespace, h.now(), map[string]string{"FunctionName": h.function}, ms); err != nil {
		h.log.Warn("metrics not written", "error", err)
	}
}
