package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/keyrot/keyrot"
)

// Webhook is one signed webhook target (notify.webhooks[i]).
type Webhook struct {
	// URL receives a signed POST per event: https, or http to localhost.
	URL string `yaml:"url"`
	// SecretEnv names the environment variable holding the HMAC secret.
	SecretEnv string `yaml:"secret_env"`
	// Events, if set, are the only event kinds sent (default: all).
	Events []string `yaml:"events,omitempty"`
	// Name labels the target in logs and metrics (default: the URL's host).
	Name string `yaml:"name,omitempty"`
}

// Slack posts each event to a Slack incoming webhook (notify.slack).
type Slack struct {
	// WebhookEnv names the environment variable holding the incoming webhook's URL, a secret; empty: no Slack.
	WebhookEnv string `yaml:"webhook_env,omitempty"`
	// Events, if set, are the only event kinds posted (default: all).
	Events []string `yaml:"events,omitempty"`
}

// EventBridge puts each event on an Amazon EventBridge bus (notify.eventbridge).
type EventBridge struct {
	// Enabled sends events to EventBridge with PutEvents.
	Enabled bool `yaml:"enabled"`
	// Bus is the event bus's name or ARN (default "default").
	Bus string `yaml:"bus"`
	// Events, if set, are the only event kinds put (default: all).
	Events []string `yaml:"events,omitempty"`
}

// DefaultEventBus is the account's default EventBridge bus.
const DefaultEventBus = "default"

var (
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	busName = regexp.MustCompile(`^([\w.\-/]{1,256}|arn:aws[\w-]*:events:[\w-]+:\d{12}:event-bus/[\w.\-/]{1,256})$`)
)

// WebhookName is the webhook's label: its name, else its URL's host.
func (w Webhook) WebhookName() string {
	if w.Name != "" {
		return w.Name
	}
	if u, err := url.Parse(w.URL); err == nil {
		return u.Host
	}
	return ""
}

// validateChannels checks notify.webhooks, notify.slack and
// notify.eventbridge. Whether the named environment variables are set is
// checked where they are read (the engine's wiring), with the same fields.
func (n Notify) validateChannels() error {
	names := map[string]int{}
	for i, w := range n.Webhooks {
		field := fmt.Sprintf("notify.webhooks[%d]", i)
		if err := CheckPostURL(field+".url", w.URL); err != nil {
			return err
		}
		if !envName.MatchString(w.SecretEnv) {
			return &Error{Field: field + ".secret_env", Value: w.SecretEnv, Reason: "required: the name of the environment variable holding the HMAC secret (letters, digits and _)"}
		}
		if err := checkKinds(field+".events", w.Events); err != nil {
			return err
		}
		name := w.WebhookName()
		if j, dup := names[name]; dup {
			return &Error{Field: field + ".name", Value: name, Reason: fmt.Sprintf("notify.webhooks[%d] has the same name: set name to tell them apart in logs and metrics", j)}
		}
		names[name] = i
	}
	if s := n.Slack; s.WebhookEnv != "" || len(s.Events) > 0 {
		if !envName.MatchString(s.WebhookEnv) {
			return &Error{Field: "notify.slack.webhook_env", Value: s.WebhookEnv, Reason: "required: the name of the environment variable holding the incoming webhook's URL (letters, digits and _)"}
		}
		if err := checkKinds("notify.slack.events", s.Events); err != nil {
			return err
		}
	}
	if eb := n.EventBridge; eb.Enabled {
		if !busName.MatchString(eb.Bus) {
			return &Error{Field: "notify.eventbridge.bus", Value: eb.Bus, Reason: "must be an event bus name or ARN (default \"default\")"}
		}
		if err := checkKinds("notify.eventbridge.events", eb.Events); err != nil {
			return err
		}
	}
	return nil
}

// CheckPostURL checks a URL keyrot posts events to: https, or http to
// localhost (a receiver on the same machine), with no credentials in it.
// The error names field.
func CheckPostURL(field, raw string) error {
	if err := checkPostURL(field, raw, false); err != nil {
		return err
	}
	return nil
}

// checkPostURL is CheckPostURL; with secret (a Slack webhook's URL) the
// error never shows the URL.
func checkPostURL(field, raw string, secret bool) *Error {
	shown := raw
	if secret {
		shown = ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return &Error{Field: field, Value: shown, Reason: "must be an https URL"}
	}
	if u.User != nil {
		return &Error{Field: field, Value: shown, Reason: "must not hold credentials"}
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return &Error{Field: field, Value: shown, Reason: "must be https (http only to localhost or 127.0.0.1): events go over the network"}
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// checkKinds checks an events filter.
func checkKinds(field string, kinds []string) error {
	for _, k := range kinds {
		if !slices.Contains(keyrot.EventKinds, keyrot.EventKind(k)) {
			known := make([]string, len(keyrot.EventKinds))
			for i, kk := range keyrot.EventKinds {
				known[i] = string(kk)
			}
			return &Error{Field: field, Value: k, Reason: "unknown event kind (want one of " + strings.Join(known, ", ") + ")"}
		}
	}
	return nil
}

// EventKinds is an events filter as event kinds (nil: all).
func EventKinds(kinds []string) []keyrot.EventKind {
	if len(kinds) == 0 {
		return nil
	}
	out := make([]keyrot.EventKind, len(kinds))
	for i, k := range kinds {
		out[i] = keyrot.EventKind(k)
	}
	return out
}

// ChannelSecrets reads the channels' secrets through lookup: each
// webhook's HMAC secret (in the order of notify.webhooks) and the Slack
// webhook URL (empty without notify.slack). An unset or empty variable,
// or a Slack URL that is not https, is an *Error naming the field; no
// error shows a secret.
func (n Notify) ChannelSecrets(lookup func(string) (string, bool)) (webhookSecrets []string, slackURL string, err error) {
	for i, w := range n.Webhooks {
		v, ok := lookup(w.SecretEnv)
		if !ok || v == "" {
			return nil, "", &Error{Field: fmt.Sprintf("notify.webhooks[%d].secret_env", i), Value: w.SecretEnv, Reason: "the environment variable is not set or empty: it must hold the webhook's HMAC secret"}
		}
		webhookSecrets = append(webhookSecrets, v)
	}
	if env := n.Slack.WebhookEnv; env != "" {
		v, ok := lookup(env)
		if !ok || v == "" {
			return nil, "", &Error{Field: "notify.slack.webhook_env", Value: env, Reason: "the environment variable is not set or empty: it must hold the Slack incoming webhook's URL"}
		}
		if err := checkPostURL("notify.slack.webhook_env", v, true); err != nil {
			err.Reason = env + " " + err.Reason
			return nil, "", err
		}
		slackURL = v
	}
	return webhookSecrets, slackURL, nil
}
