package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/ses"
	"github.com/keyrot/keyrot/smtp"
)

// NewNotifier builds and starts the email notifier the config describes,
// alone: for `keyrot serve`, which runs no engine but tells the admin about
// API keys close to expiry. Close it to deliver what is queued.
func NewNotifier(ctx context.Context, cfg config.Config, awsCfg aws.Config, log *slog.Logger) (*email.Notifier, error) {
	return newNotifier(ctx, cfg, awsCfg, log, nil, nil)
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
