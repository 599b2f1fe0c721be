package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
)

const channelsBase = "users: {names: [ci-bot]}\nnotify: {via: log, "

func TestChannelsParse(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader(`
users: {names: [ci-bot]}
notify:
  via: log
  webhooks:
    - url: https://hooks.example.com/keyrot
      secret_env: KEYROT_WEBHOOK_SECRET
      events: [key_created, rotation_failed]
    - {url: "http://127.0.0.1:9000/x", secret_env: LOCAL_SECRET, name: local}
  slack: {webhook_env: KEYROT_SLACK_WEBHOOK_URL}
  eventbridge: {enabled: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := cfg.Notify
	if len(n.Webhooks) != 2 || n.Webhooks[0].WebhookName() != "hooks.example.com" || n.Webhooks[1].WebhookName() != "local" {
		t.Errorf("webhooks = %+v", n.Webhooks)
	}
	if got := config.EventKinds(n.Webhooks[0].Events); len(got) != 2 || got[1] != "rotation_failed" {
		t.Errorf("events = %v", got)
	}
	if !n.EventBridge.Enabled || n.EventBridge.Bus != "default" {
		t.Errorf("eventbridge = %+v, want enabled on the default bus", n.EventBridge)
	}
	if n.Slack.WebhookEnv != "KEYROT_SLACK_WEBHOOK_URL" {
		t.Errorf("slack = %+v", n.Slack)
	}

	secrets, slackURL, err := n.ChannelSecrets(env(map[string]string{
		"KEYROT_WEBHOOK_SECRET": "s1", "LOCAL_SECRET": "s2", "KEYROT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/SECRET",
	}))
	if err != nil || strings.Join(secrets, ",") != "s1,s2" || slackURL != "https://hooks.slack.com/services/T/B/SECRET" {
		t.Errorf("ChannelSecrets = %v, %q, %v", secrets, slackURL, err)
	}
}

func TestChannelsInvalid(t *testing.T) {
	for _, tc := range []struct {
		yaml, field string
	}{
		{`webhooks: [{url: "http://hooks.example.com/x", secret_env: S}]}`, "notify.webhooks[0].url"},
		{`webhooks: [{url: "https://user:pw@hooks.example.com/x", secret_env: S}]}`, "notify.webhooks[0].url"},
		{`webhooks: [{url: "not a url", secret_env: S}]}`, "notify.webhooks[0].url"},
		{`webhooks: [{url: "https://a.example.com/"}]}`, "notify.webhooks[0].secret_env"},
		{`webhooks: [{url: "https://a.example.com/", secret_env: "1BAD-NAME"}]}`, "notify.webhooks[0].secret_env"},
		{`webhooks: [{url: "https://a.example.com/", secret_env: S, events: [key_rotated]}]}`, "notify.webhooks[0].events"},
		{`webhooks: [{url: "https://a.example.com/1", secret_env: S}, {url: "https://a.example.com/2", secret_env: S}]}`, "notify.webhooks[1].name"},
		{`slack: {events: [warning]}}`, "notify.slack.webhook_env"},
		{`slack: {webhook_env: SLACK, events: [nope]}}`, "notify.slack.events"},
		{`eventbridge: {enabled: true, bus: "bad bus"}}`, "notify.eventbridge.bus"},
		{`eventbridge: {enabled: true, events: [nope]}}`, "notify.eventbridge.events"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			cfg, err := config.Parse(strings.NewReader(channelsBase + tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			var cerr *config.Error
			if err := cfg.Validate(); !errors.As(err, &cerr) || cerr.Field != tc.field {
				t.Errorf("Validate = %v, want an error on %s", err, tc.field)
			}
		})
	}
	for _, ok := range []string{
		`webhooks: [{url: "http://localhost:8080/x", secret_env: S}]}`,
		`webhooks: [{url: "http://[::1]:8080/x", secret_env: S}]}`,
		`eventbridge: {enabled: true, bus: "arn:aws:events:eu-west-1:123456789012:event-bus/ops"}}`,
		`eventbridge: {enabled: false, bus: ""}}`,
	} {
		cfg, err := config.Parse(strings.NewReader(channelsBase + ok))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestChannelSecretsNeverShown(t *testing.T) {
	n := config.Notify{
		Webhooks: []config.Webhook{{URL: "https://a.example.com", SecretEnv: "HOOK_SECRET"}},
		Slack:    config.Slack{WebhookEnv: "SLACK_URL"},
	}
	for _, tc := range []struct {
		env   map[string]string
		field string
	}{
		{map[string]string{"SLACK_URL": "https://hooks.slack.com/services/T/B/zzslackzz"}, "notify.webhooks[0].secret_env"},
		{map[string]string{"HOOK_SECRET": "", "SLACK_URL": "https://hooks.slack.com/services/T/B/zzslackzz"}, "notify.webhooks[0].secret_env"},
		{map[string]string{"HOOK_SECRET": "zzhmaczz"}, "notify.slack.webhook_env"},
		{map[string]string{"HOOK_SECRET": "zzhmaczz", "SLACK_URL": "http://hooks.slack.com/services/T/B/zzslackzz"}, "notify.slack.webhook_env"},
	} {
		_, _, err := n.ChannelSecrets(env(tc.env))
		var cerr *config.Error
		if !errors.As(err, &cerr) || cerr.Field != tc.field {
			t.Errorf("ChannelSecrets(%v) = %v, want an error on %s", tc.env, err, tc.field)
			continue
		}
		if strings.Contains(err.Error(), "zzslackzz") || strings.Contains(err.Error(), "zzhmaczz") {
			t.Errorf("error shows a secret: %v", err)
		}
	}
}
