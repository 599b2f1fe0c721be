package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/ses"
	"github.com/keyrot/keyrot/smtp"
)

// NewNotifier builds and starts the notifiers the config describes (email,
// webhooks, Slack, EventBridge), alone: for `keyrot serve`, which runs no
// engine but tells the admin about API keys close to expiry. Close it to
// deliver what is queued.
func NewNotifier(ctx context.Context, cfg config.Config, awsCfg aws.Config, log *slog.Logger) (*Notifiers, error) {
	return newNotifiers(ctx, cfg, awsCfg, log, Options{})
}

// Notifiers are email and the channels beyond it, as one keyrot.Notifier.
// Each queues on its own: one failing or slow never holds up another, or
// the engine.
type Notifiers struct {
	Email    *email.Notifier
	Channels []*notify.Queue
}

var _ keyrot.Notifier = (*Notifiers)(nil)

// newNotifiers builds the notifiers and starts their delivery goroutines,
// with opts' clock, hooks and environment lookup (nil: os.LookupEnv).
func newNotifiers(ctx context.Context, cfg config.Config, awsCfg aws.Config, log *slog.Logger, opts Options) (*Notifiers, error) {
	lookup := opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	// The channels first: a secret missing from the environment stops the
	// start before anything runs.
	chans, err := newChannels(cfg, awsCfg, log, opts.NotifyClock, lookup, opts.DeliveryResult)
	if err != nil {
		return nil, err
	}
	n, err := newNotifier(ctx, cfg, awsCfg, log, opts.NotifyClock, opts.NotifyResult)
	if err != nil {
		return nil, err
	}
	ns := &Notifiers{Email: n, Channels: chans}
	if err := startChannels(ctx, chans); err != nil {
		return nil, errors.Join(err, ns.Close(ctx))
	}
	return ns, nil
}

// Notify queues e with every notifier.
func (ns *Notifiers) Notify(ctx context.Context, e keyrot.Event) error {
	all := make(keyrot.MultiNotifier, 0, 1+len(ns.Channels))
	if ns.Email != nil {
		all = append(all, ns.Email)
	}
	for _, q := range ns.Channels {
		all = append(all, q)
	}
	return all.Notify(ctx, e)
}

// Flush delivers what every notifier has queued, until ctx is done.
func (ns *Notifiers) Flush(ctx context.Context) error {
	return ns.each(func(q queued) error { return q.Flush(ctx) })
}

// Close drains every notifier, until ctx is done.
func (ns *Notifiers) Close(ctx context.Context) error {
	return ns.each(func(q queued) error { return q.Close(ctx) })
}

// queued is a notifier with a queue to drain.
type queued interface {
	Flush(ctx context.Context) error
	Close(ctx context.Context) error
}

// each calls f on every notifier at once (so that a slow one does not use
// up the others' time to drain) and joins the errors.
func (ns *Notifiers) each(f func(queued) error) error {
	var all []queued
	if ns.Email != nil {
		all = append(all, ns.Email)
	}
	for _, q := range ns.Channels {
		all = append(all, q)
	}
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, q := range all {
		wg.Go(func() { errs[i] = f(q) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// newNotifier builds the email notifier the config describes and starts
// its delivery goroutine; the returned func drains and stops it.
func newNotifier(ctx context.Context, cfg config.Config, awsCfg aws.Config, log *slog.Logger, clock keyrot.Clock, onResult func(keyrot.EventKind, error)) (*email.Notifier, error) {
	var sender email.Sender
	switch cfg.Notify.Via {
	case "ses":
		// The notifier retries with backoff on its own; one SDK attempt each.
		sender = ses.New(sesv2.NewFromConfig(awsCfg, func(o *sesv2.Options) { o.RetryMaxAttempts = 1 }))
	case "smtp":
		s, err := smtp.New(cfg.SMTPConfig())
		if err != nil {
			return nil, &config.Error{Field: "notify.smtp", Reason: err.Error()}
		}
		sender = s
	default:
		sender = &email.LogSender{Logger: log.With("system", "email")}
	}
	opts := []email.Option{email.WithLogger(log)}
	if clock != nil {
		opts = append(opts, email.WithClock(clock))
	}
	if onResult != nil {
		opts = append(opts, email.WithResultHook(onResult))
	}
	n, err := email.NewNotifier(cfg.Email(awsCfg.Region), sender, opts...)
	if err != nil {
		return nil, &config.Error{Field: "notify", Reason: err.Error()}
	}
	if err := n.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, fmt.Errorf("app: start notifier: %w", err)
	}
	return n, nil
}
