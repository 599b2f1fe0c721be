package slack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/slack"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// incomingWebhook answers as Slack's incoming webhooks do: 200 "ok" for a
// message with text, 400 "invalid_payload" or "no_text" otherwise, and
// the status it is told to fail with.
type incomingWebhook struct {
	mu     sync.Mutex
	fail   int
	got    []map[string]any
	header http.Header
}

func (s *incomingWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/services/T000/B000/XXXXSECRET" {
		http.Error(w, "no_service", http.StatusNotFound)
		return
	}
	if s.fail != 0 {
		http.Error(w, "failing", s.fail)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	if text, _ := m["text"].(string); text == "" {
		http.Error(w, "no_text", http.StatusBadRequest)
		return
	}
	s.got = append(s.got, m)
	s.header = r.Header.Clone()
	_, _ = io.WriteString(w, "ok")
}

func TestSlackDelivers(t *testing.T) {
	hook := &incomingWebhook{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	d := slack.New(srv.URL+"/services/T000/B000/XXXXSECRET", nil)
	e := keyrot.Event{Kind: keyrot.EventRotationFailed, User: "ci-deploy", KeyID: "AKIAEXAMPLE000000001", Time: t0,
		Summary: "rotation of ci-deploy failed", Err: "iam: create access key: LimitExceeded <2 keys>"}
	if err := d.Deliver(context.Background(), notify.Delivery{Event: e, Payload: notify.NewPayload(e), Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	if len(hook.got) != 1 {
		t.Fatalf("webhook got %d messages", len(hook.got))
	}
	if ct := hook.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	b, _ := json.Marshal(hook.got[0])
	var m slack.Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Text != "Rotation failed: rotation of ci-deploy failed" {
		t.Errorf("text = %q", m.Text)
	}
	if len(m.Blocks) != 2 || m.Blocks[0].Type != "section" || m.Blocks[0].Text.Type != "mrkdwn" || m.Blocks[1].Type != "context" {
		t.Fatalf("blocks = %s", b)
	}
	if got := m.Blocks[0].Text.Text; got != ":rotating_light: *Rotation failed* for `ci-deploy`\nrotation of ci-deploy failed" {
		t.Errorf("section = %q", got)
	}
	ctx := m.Blocks[1].Elements
	if len(ctx) != 2 || ctx[0].Text != "Key `AKIAEXAMPLE000000001`" || ctx[1].Text != "Error: iam: create access key: LimitExceeded &lt;2 keys&gt;" {
		t.Errorf("context = %+v", ctx)
	}
}

func TestSlackFailures(t *testing.T) {
	for _, tc := range []struct {
		status    int
		permanent bool
	}{
		{http.StatusForbidden, true}, // invalid_token
		{http.StatusGone, true},      // channel_is_archived
		{http.StatusTooManyRequests, false},
		{http.StatusInternalServerError, false},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			srv := httptest.NewServer(&incomingWebhook{fail: tc.status})
			defer srv.Close()
			url := srv.URL + "/services/T000/B000/XXXXSECRET"
			e := keyrot.Event{Kind: keyrot.EventKeyDeleted, User: "u", Summary: "s"}
			err := slack.New(url, nil).Deliver(context.Background(), notify.Delivery{Event: e, Payload: notify.NewPayload(e)})
			if err == nil || notify.IsPermanent(err) != tc.permanent {
				t.Fatalf("err = %v, permanent %v; want permanent %v", err, notify.IsPermanent(err), tc.permanent)
			}
			if strings.Contains(err.Error(), "XXXXSECRET") || strings.Contains(err.Error(), srv.URL) {
				t.Errorf("error shows the webhook URL: %v", err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL + "/services/T000/B000/XXXXSECRET"
		srv.Close()
		e := keyrot.Event{Kind: keyrot.EventKeyDeleted, User: "u", Summary: "s"}
		err := slack.New(url, nil).Deliver(context.Background(), notify.Delivery{Event: e, Payload: notify.NewPayload(e)})
		if err == nil || notify.IsPermanent(err) || strings.Contains(err.Error(), "XXXXSECRET") {
			t.Errorf("err = %v: want a retryable error without the URL", err)
		}
	})
}

func TestFormatEveryKind(t *testing.T) {
	for _, k := range []keyrot.EventKind{keyrot.EventKeyCreated, keyrot.EventKeyDeactivated, keyrot.EventKeyDeleted,
		keyrot.EventRotationFailed, keyrot.EventRotationRecovered, keyrot.EventWarning} {
		m := slack.Format(keyrot.Event{Kind: k, Warning: keyrot.WarnKeyInUse, User: "a", Summary: "s"})
		if m.Text == "" || len(m.Blocks) == 0 || strings.Contains(m.Blocks[0].Text.Text, ":information_source:") {
			t.Errorf("%s: %+v", k, m)
		}
	}
	m := slack.Format(keyrot.Event{Kind: keyrot.EventWarning, Warning: keyrot.WarnAPIKeyExpiring, APIKey: "ci", Summary: "API key ci expires soon"})
	if !strings.Contains(m.Blocks[0].Text.Text, "for `API key ci`") || !strings.Contains(m.Text, "(api_key_expiring)") {
		t.Errorf("API key warning: %+v", m)
	}
}
