// Package slack posts keyrot's events to a Slack incoming webhook
// (https://api.slack.com/messaging/webhooks): one short message per event,
// a plain-text fallback and Block Kit blocks in mrkdwn.
//
// The webhook URL is the credential: whoever has it can post to the
// channel. keyrot reads it from an environment variable and never logs it;
// errors name the answer's status, never the URL.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/webhook"
)

// Message is what an incoming webhook takes: Text is the fallback shown in
// notifications, Blocks the formatted message.
type Message struct {
	Text   string  `json:"text"`
	Blocks []Block `json:"blocks"`
}

// Block is a Block Kit layout block: a section with text, or a context
// with small elements.
type Block struct {
	Type     string `json:"type"` // section | context
	Text     *Text  `json:"text,omitempty"`
	Elements []Text `json:"elements,omitempty"`
}

// Text is a Block Kit text object.
type Text struct {
	Type string `json:"type"` // mrkdwn
	Text string `json:"text"`
}

// Deliverer posts events to one incoming webhook.
type Deliverer struct {
	url    string
	client webhook.Doer
}

var _ notify.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer posting to the incoming webhook at url; client
// nil is an http.Client that follows no redirect.
func New(url string, client webhook.Doer) *Deliverer {
	if client == nil {
		client = webhook.NoRedirectClient()
	}
	return &Deliverer{url: url, client: client}
}

// Deliver posts d's event as a Message. Slack answers 200 "ok"; 429 and
// 5xx are retried, any other answer (400 invalid_payload, 403
// invalid_token, 404 no_service, 410 channel_is_archived) is permanent.
func (s *Deliverer) Deliver(ctx context.Context, d notify.Delivery) error {
	body, err := json.Marshal(Format(d.Event))
	if err != nil {
		return notify.Permanent(fmt.Errorf("slack: encode message: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		// The error would quote the URL.
		return notify.Permanent(fmt.Errorf("slack: new request: the webhook URL is not valid"))
	}
	req.Header.Set("Content-Type", "application/json")
	if err := webhook.Check(s.client.Do(req)); err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	return nil
}

// headlines are each event kind's emoji and title.
var headlines = map[keyrot.EventKind][2]string{
	keyrot.EventKeyCreated:        {":key:", "New access key"},
	keyrot.EventKeyDeactivated:    {":zzz:", "Access key deactivated"},
	keyrot.EventKeyDeleted:        {":wastebasket:", "Access key deleted"},
	keyrot.EventRotationFailed:    {":rotating_light:", "Rotation failed"},
	keyrot.EventRotationRecovered: {":white_check_mark:", "Rotation recovered"},
	keyrot.EventWarning:           {":warning:", "Warning"},
}

// Format is the message for e: a headline naming the user, the summary,
// and a context line with the key id, what happens next and any error.
func Format(e keyrot.Event) Message {
	h, ok := headlines[e.Kind]
	if !ok {
		h = [2]string{":information_source:", string(e.Kind)}
	}
	emoji, title := h[0], h[1]
	if e.Kind == keyrot.EventWarning && e.Warning != "" {
		title += " (" + string(e.Warning) + ")"
	}
	who := e.User
	if who == "" && e.APIKey != "" {
		who = "API key " + e.APIKey
	}
	head := emoji + " *" + escape(title) + "*"
	if who != "" {
		head += " for `" + escape(who) + "`"
	}
	m := Message{
		Text:   escape(title + ": " + e.Summary),
		Blocks: []Block{{Type: "section", Text: &Text{Type: "mrkdwn", Text: head + "\n" + escape(e.Summary)}}},
	}
	var ctx []Text
	if e.KeyID != "" {
		ctx = append(ctx, Text{Type: "mrkdwn", Text: "Key `" + escape(e.KeyID) + "`"})
	}
	if e.Next != "" && !e.NextAt.IsZero() {
		ctx = append(ctx, Text{Type: "mrkdwn", Text: "Next: " + escape(e.Next) + " at " + e.NextAt.UTC().Format(time.RFC3339)})
	}
	if e.Err != "" {
		ctx = append(ctx, Text{Type: "mrkdwn", Text: "Error: " + escape(e.Err)})
	}
	if len(ctx) > 0 {
		m.Blocks = append(m.Blocks, Block{Type: "context", Elements: ctx})
	}
	return m
}

// escape replaces the three characters Slack's mrkdwn gives a meaning to
// in text, as Slack's formatting guide says.
var escape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace
