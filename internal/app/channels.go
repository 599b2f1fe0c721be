package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	awseb "github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/eventbridge"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/slack"
	"github.com/keyrot/keyrot/webhook"
)

// newChannels builds, unstarted, a notify.Queue for each channel beyond
// email the config names: its webhooks, Slack and EventBridge. Their
// secrets are read through lookup; one missing is a *config.Error.
func newChannels(cfg config.Config, awsCfg aws.Config, log *slog.Logger, clock keyrot.Clock, lookup func(string) (string, bool), onResult func(string, notify.Result)) ([]*notify.Queue, error) {
	secrets, slackURL, err := cfg.Notify.ChannelSecrets(lookup)
	if err != nil {
		return nil, err
	}
	if clock == nil {
		clock = keyrot.SystemClock{}
	}
	opts := []notify.Option{notify.WithLogger(log), notify.WithClock(clock)}
	if onResult != nil {
		opts = append(opts, notify.WithResultHook(onResult))
	}
	var queues []*notify.Queue
	add := func(target string, kinds []string, d notify.Deliverer) error {
		q, err := notify.NewQueue(notify.Config{Target: target, Kinds: config.EventKinds(kinds)}, d, opts...)
		if err != nil {
			return fmt.Errorf("app: %s: %w", target, err)
		}
		queues = append(queues, q)
		return nil
	}
	for i, w := range cfg.Notify.Webhooks {
		d, err := webhook.New(w.URL, []byte(secrets[i]), nil, clock)
		if err != nil {
			return nil, &config.Error{Field: fmt.Sprintf("notify.webhooks[%d]", i), Reason: err.Error()}
		}
		if err := add("webhook:"+w.WebhookName(), w.Events, d); err != nil {
			return nil, err
		}
	}
	if slackURL != "" {
		if err := add("slack", cfg.Notify.Slack.Events, slack.New(slackURL, nil)); err != nil {
			return nil, err
		}
	}
	if eb := cfg.Notify.EventBridge; eb.Enabled {
		// The queue retries with backoff; one SDK attempt each.
		api := awseb.NewFromConfig(awsCfg, func(o *awseb.Options) { o.RetryMaxAttempts = 1 })
		if err := add("eventbridge:"+eb.Bus, eb.Events, eventbridge.New(api, eb.Bus)); err != nil {
			return nil, err
		}
	}
	return queues, nil
}

// startChannels starts the queues' delivery goroutines, which outlive ctx's
// cancellation (Close drains them).
func startChannels(ctx context.Context, queues []*notify.Queue) error {
	for _, q := range queues {
		if err := q.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("app: start %s: %w", q.Target(), err)
		}
	}
	return nil
}
