// Package app builds keyrot's engine from a Config: the AWS clients, the
// adapters, the notifier and the Rotator. Both binaries (cmd/keyrot and
// cmd/keyrot-lambda) wire themselves through it, so they run the same engine.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"golang.org/x/time/rate"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/iam"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/console"
	"github.com/keyrot/keyrot/internal/logging"
	"github.com/keyrot/keyrot/internal/restclient"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/secretsmanager"
)

// Options are the parts a caller may supply instead of the defaults.
type Options struct {
	Logger *slog.Logger
	Clock  keyrot.Clock
	// AWS overrides the SDK's default config chain (tests, keyrot dev).
	AWS *aws.Config
	// Notifier overrides the one the config describes.
	Notifier keyrot.Notifier
	// Publisher receives credentials as they are promoted (the API cache).
	Publisher keyrot.CredentialsPublisher
	// StepHook is passed to the Rotator (crash tests).
	StepHook func(ctx context.Context, point string) error
	// NotifyClock drives email retries, rates and digests; nil is the wall
	// clock (tests that drive the engine's clock keep email on real time).
	NotifyClock keyrot.Clock
	// NotifyResult is told the outcome of every email (metrics).
	NotifyResult func(kind keyrot.EventKind, err error)
	// PassEvery is how often passes over every user run (the daemon's
	// resync, the Lambda's schedule); with rotation.bulk_observe it is the
	// window within which a due step makes a user observed in full.
	PassEvery time.Duration
	// Observe, if set, sees every event as it is emitted (metrics).
	Observe func(keyrot.Event)
	// LookupEnv reads the secrets the config names by variable: the
	// channels' (webhook HMAC secrets, the Slack webhook URL) and the sync
	// targets' tokens (KEYROT_GITHUB_TOKEN, KEYROT_GITLAB_TOKEN). Nil
	// builds sync targets that only show their state (status and dry runs
	// need no tokens); the channels then read os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// DeliveryResult is told the outcome of every attempt to deliver an
	// event to a webhook, Slack or EventBridge (metrics).
	DeliveryResult func(target string, r notify.Result)
	// SyncResult is told the outcome of every delivery of a key to a sync
	// target (metrics).
	SyncResult func(target string, err error)
	// SyncClient sends the targets' requests (tests; nil: the default
	// timeouts and retries).
	SyncClient *restclient.Client
}

// App is a wired engine.
type App struct {
	Config   config.Config
	AWS      aws.Config
	Keys     *iam.KeyManager
	Store    *secretsmanager.Store
	Notifier keyrot.Notifier
	// Email is the email notifier, when the config built one.
	Email   *email.Notifier
	Rotator *keyrot.Rotator
	Logger  *slog.Logger
	closers []func(context.Context) error

	// Channels are the webhooks, Slack and EventBridge the config names.
	Channels []*notify.Queue
}

// New builds the engine described by cfg.
func New(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &App{Config: cfg, Logger: log}
	var err error
	if a.AWS, err = awsConfig(ctx, cfg, opts); err != nil {
		return nil, err
	}
	a.Keys = iam.New(awsiam.NewFromConfig(a.AWS), rate.NewLimiter(rate.Limit(cfg.Rotation.IAMRate), max(1, int(cfg.Rotation.IAMRate))))
	a.Store = NewStore(a.AWS, cfg.Secrets.Prefix, cfg.Secrets.KMSKeyID)

	a.Notifier = opts.Notifier
	if a.Notifier == nil {
		ns, err := newNotifiers(ctx, cfg, a.AWS, log, opts)
		if err != nil {
			return nil, err
		}
		a.Notifier, a.Email, a.Channels = ns, ns.Email, ns.Channels
		a.closers = append(a.closers, ns.Close)
	}
	if opts.Observe != nil {
		inner := a.Notifier
		a.Notifier = keyrot.NotifierFunc(func(ctx context.Context, e keyrot.Event) error {
			opts.Observe(e)
			return inner.Notify(ctx, e)
		})
	}
	var fleet *keyrot.FleetConfig
	if cfg.Rotation.BulkObserve {
		pass := opts.PassEvery
		if pass <= 0 {
			pass = time.Duration(cfg.Rotation.Resync)
		}
		fleet = &keyrot.FleetConfig{Keys: a.Keys, Secrets: a.Store, ObserveEvery: time.Duration(cfg.Rotation.ObserveEvery), PassEvery: pass}
	}
	targets, err := deliveryTargets(cfg.Sync, opts.LookupEnv, opts.SyncClient)
	if err != nil {
		return nil, err
	}
	rot, err := keyrot.NewRotator(keyrot.RotatorConfig{
		Keys: a.Keys, Verifier: iam.NewVerifier(a.AWS), Secrets: a.Store,
		Notifier: a.Notifier, Publisher: opts.Publisher,
		Policy: cfg.Policy(), Users: cfg.Selector(), OwnerTag: cfg.Users.OwnerTag, WarnEvery: time.Duration(cfg.Notify.QuietPeriod),
		Concurrency: cfg.Rotation.Concurrency, Clock: opts.Clock, Logger: log, StepHook: opts.StepHook,
		Fleet: fleet, Targets: targets, OnDelivery: opts.SyncResult,
	})
	if err != nil {
		return nil, err
	}
	a.Rotator = rot
	return a, nil
}

// LoadAWS loads the AWS SDK's standard configuration chain (environment,
// AWS_ENDPOINT_URL, profiles, roles), with region overriding its region.
func LoadAWS(ctx context.Context, region string) (aws.Config, error) {
	var loadOpts []func(*awsconfig.LoadOptions) error
	if region != "" {
		loadOpts = append(loadOpts, awsconfig.WithRegion(region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return cfg, fmt.Errorf("app: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return cfg, &config.Error{Field: "region", Reason: "no AWS region: set region in the config, KEYROT_REGION or AWS_REGION"}
	}
	return cfg, nil
}

// NewStore is the Secrets Manager store alone, for readers (serve, credentials --direct).
func NewStore(awsCfg aws.Config, prefix, kmsKeyID string) *secretsmanager.Store {
	return secretsmanager.New(awssm.NewFromConfig(awsCfg), secretsmanager.Config{Prefix: prefix, KMSKeyID: kmsKeyID})
}

// Flush delivers the queued notifications (a Lambda invocation's end).
func (a *App) Flush(ctx context.Context) error {
	return (&Notifiers{Email: a.Email, Channels: a.Channels}).Flush(ctx)
}

// Close flushes what is queued (notifications) until ctx is done.
func (a *App) Close(ctx context.Context) error {
	var errs []error
	for _, c := range a.closers {
		errs = append(errs, c(ctx))
	}
	return errors.Join(errs...)
}

// NewLogger returns the logger the config asks for: JSON unless the format
// is text, or unset on a terminal; console is a short line per key event
// for a person (in colour when terminal says w is one). w is the
// process's logging.Writer for the stream, shared by every logger on it,
// so that records are buffered, kept whole and never interleave; no
// record has a key twice (logging.Guard).
func NewLogger(w io.Writer, cfg config.Log, terminal bool) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	if cfg.Format == "console" {
		return slog.New(logging.Guard(console.New(w, console.Options{Level: level, Color: terminal})))
	}
	o := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" || (cfg.Format == "" && terminal) {
		return slog.New(logging.Guard(slog.NewTextHandler(w, o)))
	}
	return slog.New(logging.Guard(logging.NewJSONHandler(w, level)))
}
