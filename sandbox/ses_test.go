package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

type sesEnv struct {
	srv   *sandbox.Server
	clock *sandboxtest.Clock
	ses   *sesv2.Client
}

func newSESEnv(t testing.TB) *sesEnv {
	t.Helper()
	clock := sandboxtest.NewClock(smT0)
	srv := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 7})
	return &sesEnv{srv: srv, clock: clock, ses: sesv2.NewFromConfig(sandboxtest.Config(t, srv))}
}

func simpleEmail(from string, to []string, subject, text, html string) *sesv2.SendEmailInput {
	body := &sestypes.Body{}
	if text != "" {
		body.Text = &sestypes.Content{Data: aws.String(text), Charset: aws.String("UTF-8")}
	}
	if html != "" {
		body.Html = &sestypes.Content{Data: aws.String(html)}
	}
	return &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(from),
		Destination:      &sestypes.Destination{ToAddresses: to},
		Content: &sestypes.EmailContent{Simple: &sestypes.Message{
			Subject: &sestypes.Content{Data: aws.String(subject)},
			Body:    body,
		}},
	}
}

func TestSESSendSimple(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	in := simpleEmail("keyrot <keyrot@example.com>", []string{"alice@example.com"}, "Your key rotates", "Hello Alice", "<p>Hello Alice</p>")
	in.Destination.CcAddresses = []string{"admin@example.com"}
	in.Destination.BccAddresses = []string{"audit@example.com"}
	in.ReplyToAddresses = []string{"noreply@example.com"}
	in.EmailTags = []sestypes.MessageTag{{Name: aws.String("kind"), Value: aws.String("rotation")}}
	in.ConfigurationSetName = aws.String("keyrot")
	out, err := e.ses.SendEmail(ctx, in)
	smMust(t, err, "send")
	if aws.ToString(out.MessageId) == "" {
		t.Fatal("no MessageId")
	}

	box := e.srv.Outbox()
	if len(box) != 1 {
		t.Fatalf("outbox has %d messages, want 1", len(box))
	}
	m := box[0]
	if m.MessageID != aws.ToString(out.MessageId) || m.From != "keyrot <keyrot@example.com>" || m.Subject != "Your key rotates" ||
		m.Text != "Hello Alice" || m.HTML != "<p>Hello Alice</p>" || !m.Time.Equal(smT0) ||
		!slices.Equal(m.To, []string{"alice@example.com"}) || !slices.Equal(m.Cc, []string{"admin@example.com"}) ||
		!slices.Equal(m.Bcc, []string{"audit@example.com"}) || !slices.Equal(m.ReplyTo, []string{"noreply@example.com"}) ||
		m.Tags["kind"] != "rotation" || m.ConfigurationSetName != "keyrot" || m.Raw != "" {
		t.Errorf("outbox entry = %+v", m)
	}

	t.Run("admin endpoint", func(t *testing.T) {
		resp, err := http.Get(e.srv.URL() + "/_sandbox/ses/outbox")
		smMust(t, err, "get outbox")
		defer resp.Body.Close()
		var got []map[string]any
		smMust(t, json.NewDecoder(resp.Body).Decode(&got), "decode outbox")
		if len(got) != 1 || got[0]["messageId"] != m.MessageID || got[0]["subject"] != "Your key rotates" || got[0]["text"] != "Hello Alice" {
			t.Errorf("outbox = %v", got)
		}
		req, _ := http.NewRequest(http.MethodDelete, e.srv.URL()+"/_sandbox/ses/outbox", nil)
		resp2, err := http.DefaultClient.Do(req)
		smMust(t, err, "clear outbox")
		resp2.Body.Close()
		if n := len(e.srv.Outbox()); n != 0 {
			t.Errorf("outbox has %d messages after clearing", n)
		}
	})
}

const rawMessage = "From: Key Rotation <keyrot@example.com>\r\n" +
	"To: alice@example.com, \"Bob B\" <bob@example.com>\r\n" +
	"Cc: admin@example.com\r\n" +
	"Subject: =?UTF-8?Q?Cl=C3=A9_rotated?=\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Your new key is ready: cl=C3=A9 AKIA=\r\nEXAMPLE.\r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+WW91ciBuZXcga2V5IGlz\r\nIHJlYWR5LjwvcD4=\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: text/csv; name=\"keys.csv\"\r\n" +
	"Content-Disposition: attachment; filename=\"keys.csv\"\r\n" +
	"\r\n" +
	"a,b\r\n" +
	"--outer--\r\n"

func TestSESSendRaw(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	_, err := e.ses.SendEmail(ctx, &sesv2.SendEmailInput{
		Content: &sestypes.EmailContent{Raw: &sestypes.RawMessage{Data: []byte(rawMessage)}},
	})
	smMust(t, err, "send raw")
	box := e.srv.Outbox()
	if len(box) != 1 {
		t.Fatalf("outbox has %d messages", len(box))
	}
	m := box[0]
	checks := []struct{ name, got, want string }{
		{"from", m.From, "Key Rotation <keyrot@example.com>"},
		{"to", strings.Join(m.To, ","), "alice@example.com,Bob B <bob@example.com>"},
		{"cc", strings.Join(m.Cc, ","), "admin@example.com"},
		{"subject", m.Subject, "Clé rotated"},
		{"text", m.Text, "Your new key is ready: clé AKIAEXAMPLE."},
		{"html", m.HTML, "<p>Your new key is ready.</p>"},
		{"raw", m.Raw, rawMessage},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if len(m.Attachments) != 1 || m.Attachments[0].FileName != "keys.csv" || m.Attachments[0].ContentType != "text/csv" {
		t.Errorf("attachments = %+v", m.Attachments)
	}

	t.Run("request fields win over headers", func(t *testing.T) {
		e.srv.ClearOutbox()
		_, err := e.ses.SendEmail(ctx, &sesv2.SendEmailInput{
			FromEmailAddress: aws.String("other@example.com"),
			Destination:      &sestypes.Destination{ToAddresses: []string{"carol@example.com"}},
			Content:          &sestypes.EmailContent{Raw: &sestypes.RawMessage{Data: []byte(rawMessage)}},
		})
		smMust(t, err, "send raw")
		m := e.srv.Outbox()[0]
		if m.From != "other@example.com" || !slices.Equal(m.To, []string{"carol@example.com"}) || len(m.Cc) != 0 {
			t.Errorf("from %q to %v cc %v", m.From, m.To, m.Cc)
		}
	})
}

func TestSESErrors(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	var many []string
	for i := range 51 {
		many = append(many, fmt.Sprintf("user%d@example.com", i))
	}
	noFrom := simpleEmail("", []string{"a@example.com"}, "s", "t", "")
	noFrom.FromEmailAddress = nil
	noBody := simpleEmail("k@example.com", []string{"a@example.com"}, "s", "", "")
	noRecipients := simpleEmail("k@example.com", nil, "s", "t", "")
	template := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("k@example.com"),
		Destination:      &sestypes.Destination{ToAddresses: []string{"a@example.com"}},
		Content:          &sestypes.EmailContent{Template: &sestypes.Template{TemplateName: aws.String("t")}},
	}
	tests := []struct {
		name string
		in   *sesv2.SendEmailInput
		code string
	}{
		{"no from", noFrom, "BadRequestException"},
		{"empty body", noBody, "BadRequestException"},
		{"no recipients", noRecipients, "BadRequestException"},
		{"51 recipients", simpleEmail("k@example.com", many, "s", "t", ""), "BadRequestException"},
		{"bad address", simpleEmail("k@example.com", []string{"not an address"}, "s", "t", ""), "BadRequestException"},
		{"template", template, "BadRequestException"},
		{"bad raw", &sesv2.SendEmailInput{Content: &sestypes.EmailContent{Raw: &sestypes.RawMessage{Data: []byte("no headers here")}}}, "MessageRejected"},
		{"raw without from", &sesv2.SendEmailInput{Content: &sestypes.EmailContent{Raw: &sestypes.RawMessage{Data: []byte("To: a@example.com\r\n\r\nhi")}}}, "BadRequestException"},
		{"raw with a bad part", &sesv2.SendEmailInput{Content: &sestypes.EmailContent{Raw: &sestypes.RawMessage{Data: []byte(
			"From: k@example.com\r\nTo: a@example.com\r\nContent-Type: multipart/mixed\r\n\r\nhi")}}}, "MessageRejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.ses.SendEmail(ctx, tt.in)
			smWantCode(t, err, tt.code)
		})
	}
	if n := len(e.srv.Outbox()); n != 0 {
		t.Errorf("outbox has %d messages after failed sends", n)
	}

	t.Run("IAM users may not send", func(t *testing.T) {
		smEnv := &smEnv{srv: e.srv, clock: e.clock, cfg: sandboxtest.Config(t, e.srv)}
		_, cfg := smCreateUser(t, smEnv, "mallory")
		_, err := sesv2.NewFromConfig(cfg).SendEmail(ctx, simpleEmail("k@example.com", []string{"a@example.com"}, "s", "t", ""))
		smWantCode(t, err, "AccessDeniedException")
	})
}

func TestSESGetAccount(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	for range 3 {
		_, err := e.ses.SendEmail(ctx, simpleEmail("k@example.com", []string{"a@example.com"}, "s", "t", ""))
		smMust(t, err, "send")
		e.clock.Advance(time.Hour)
	}
	acct, err := e.ses.GetAccount(ctx, &sesv2.GetAccountInput{})
	smMust(t, err, "get account")
	if acct.ProductionAccessEnabled || !acct.SendingEnabled || acct.SendQuota == nil {
		t.Fatalf("account = %+v", acct)
	}
	if got := acct.SendQuota.SentLast24Hours; got != 3 {
		t.Errorf("SentLast24Hours = %v, want 3", got)
	}
	if acct.SendQuota.Max24HourSend <= 0 || acct.SendQuota.MaxSendRate <= 0 {
		t.Errorf("quota = %+v", acct.SendQuota)
	}
	e.clock.Advance(21*time.Hour + time.Minute)
	acct, err = e.ses.GetAccount(ctx, &sesv2.GetAccountInput{})
	smMust(t, err, "get account")
	if got := acct.SendQuota.SentLast24Hours; got != 2 {
		t.Errorf("a day after the first send, SentLast24Hours = %v, want 2", got)
	}
}

func TestSESConcurrentSends(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if _, err := e.ses.SendEmail(ctx, simpleEmail("k@example.com", []string{fmt.Sprintf("u%d-%d@example.com", w, i)}, "s", "t", "")); err != nil {
					t.Error(err)
					return
				}
				_ = e.srv.Outbox()
			}
		}()
	}
	wg.Wait()
	box := e.srv.Outbox()
	if len(box) != 80 {
		t.Errorf("outbox has %d messages, want 80", len(box))
	}
	ids := map[string]bool{}
	for _, m := range box {
		ids[m.MessageID] = true
	}
	if len(ids) != 80 {
		t.Errorf("%d distinct message ids, want 80", len(ids))
	}
}

// TestSESDrainOutbox: draining hands over every message once and leaves
// the outbox empty; a message sent after the drain is in the next one.
func TestSESDrainOutbox(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	drain := func() []sandbox.Email {
		t.Helper()
		resp, err := http.Post(e.srv.URL()+"/_sandbox/ses/outbox/drain", "application/json", nil)
		smMust(t, err, "drain outbox")
		defer resp.Body.Close()
		var got []sandbox.Email
		smMust(t, json.NewDecoder(resp.Body).Decode(&got), "decode drained outbox")
		return got
	}
	for _, subject := range []string{"one", "two"} {
		_, err := e.ses.SendEmail(ctx, simpleEmail("keyrot@example.com", []string{"a@example.com"}, subject, "x", ""))
		smMust(t, err, "send")
	}
	if got := drain(); len(got) != 2 || got[0].Subject != "one" || got[1].Subject != "two" {
		t.Fatalf("first drain = %+v, want one and two", got)
	}
	_, err := e.ses.SendEmail(ctx, simpleEmail("keyrot@example.com", []string{"a@example.com"}, "three", "x", ""))
	smMust(t, err, "send")
	if got := drain(); len(got) != 1 || got[0].Subject != "three" {
		t.Fatalf("second drain = %+v, want three alone", got)
	}
	if n := len(e.srv.Outbox()); n != 0 {
		t.Errorf("outbox has %d messages after draining", n)
	}
}
