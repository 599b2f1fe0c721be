package ses_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
	"github.com/keyrot/keyrot/ses"
)

// autoClock is a clock whose time jumps ahead whenever someone waits on
// it: backoff and rate limiting take no real time.
func autoClock(t time.Time) *mock.Clock {
	c := mock.NewClock(t)
	c.SetAutoAdvance(true)
	return c
}

// countingClient counts SendEmail calls.
type countingClient struct {
	ses.SESAPI
	calls atomic.Int32
}

func (c *countingClient) SendEmail(ctx context.Context, in *sesv2.SendEmailInput, opts ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	c.calls.Add(1)
	return c.SESAPI.SendEmail(ctx, in, opts...)
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func config() email.Config {
	return email.Config{
		From:       "keyrot@example.com",
		Admin:      "admins@example.com",
		APIBaseURL: "http://127.0.0.1:8000",
		Contact:    "security@example.com",
	}
}

// TestSendThroughSandbox sends one email per event kind through the real
// SES v2 client to the sandbox, with two throttled attempts first, and
// reads the outbox.
func TestSendThroughSandbox(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{Faults: sandbox.Faults{Rules: []sandbox.FaultRule{
		{Operation: "SendEmail", Kind: "throttle", Count: 2},
	}}})
	awsCfg := sandboxtest.Config(t, sb)
	awsCfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} } // the Notifier retries

	// A real key, so the test can look for its secret in every message.
	ic := iam.NewFromConfig(awsCfg)
	if _, err := ic.CreateUser(t.Context(), &iam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatal(err)
	}
	key, err := ic.CreateAccessKey(t.Context(), &iam.CreateAccessKeyInput{UserName: aws.String("ci-bot")})
	if err != nil {
		t.Fatal(err)
	}
	keyID, secret := aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey)

	client := &countingClient{SESAPI: sesv2.NewFromConfig(awsCfg)}
	results := make(chan error, 10)
	n, err := email.NewNotifier(config(), ses.New(client),
		email.WithClock(autoClock(t0)),
		email.WithLogger(slog.New(slog.DiscardHandler)),
		email.WithResultHook(func(_ keyrot.EventKind, err error) { results <- err }))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	events := []keyrot.Event{
		{Kind: keyrot.EventKeyCreated, Summary: "New key is current."},
		{Kind: keyrot.EventKeyDeactivated, Summary: "Previous key deactivated."},
		{Kind: keyrot.EventKeyDeleted, Summary: "Previous key deleted."},
		{Kind: keyrot.EventRotationFailed, Summary: "Could not rotate.", Err: "sts: verify: access key rejected by AWS"},
		{Kind: keyrot.EventWarning, Warning: keyrot.WarnKeyInUse, Summary: "Key still in use."},
	}
	for _, e := range events {
		e.User, e.KeyID, e.Owner, e.Time = "ci-bot", keyID, "owner@example.com", t0
		if err := n.Notify(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for range events {
		if err := <-results; err != nil {
			t.Errorf("delivery failed: %v", err)
		}
	}
	if got, want := int(client.calls.Load()), len(events)+2; got != want {
		t.Errorf("SendEmail calls = %d, want %d (two throttled, then one each)", got, want)
	}

	outbox := sb.Outbox()
	if got, want := len(outbox), len(events); got != want {
		t.Fatalf("outbox has %d messages, want %d", got, want)
	}
	// A throttled message is retried later while the others go on, so the
	// order is not the order of the events.
	subjects := map[string]bool{}
	for _, e := range events {
		subjects[email.Subject(keyrot.Event{Kind: e.Kind, Warning: e.Warning, User: "ci-bot", KeyID: keyID})] = true
	}
	for i, m := range outbox {
		if !subjects[m.Subject] {
			t.Errorf("message %d: unexpected or repeated subject %q", i, m.Subject)
		}
		delete(subjects, m.Subject)
		if got, want := strings.Join(m.To, ","), "admins@example.com,owner@example.com"; got != want {
			t.Errorf("message %d to %q, want %q", i, got, want)
		}
		if got, want := m.From, "keyrot@example.com"; got != want {
			t.Errorf("message %d from %q, want %q", i, got, want)
		}
		for _, section := range []string{"Event details", keyID, "2025-03-14T09:26:53Z", "What happens next",
			`curl -H "X-API-Key: $KEYROT_API_KEY" http://127.0.0.1:8000/credentials/ci-bot`,
			"credential_process = keyrot credentials ci-bot", "--direct", "aws secretsmanager get-secret-value",
			"Security best practices", "security@example.com"} {
			if !strings.Contains(m.Text, section) {
				t.Errorf("message %d text lacks %q", i, section)
			}
		}
		if m.HTML == "" || !strings.Contains(m.HTML, "Security best practices") {
			t.Errorf("message %d has no HTML part", i)
		}
		for _, s := range []string{m.Subject, m.Text, m.HTML, m.Raw} {
			if strings.Contains(s, secret) {
				t.Fatalf("message %d carries the secret access key", i)
			}
		}
	}
}

type fakeClient struct{ err error }

func (f fakeClient) SendEmail(context.Context, *sesv2.SendEmailInput, ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	return nil, f.err
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code      string
		permanent bool
	}{
		{"TooManyRequestsException", false},
		{"LimitExceededException", false},
		{"InternalServiceErrorException", false},
		{"MessageRejected", true},
		{"MailFromDomainNotVerifiedException", true},
		{"BadRequestException", true},
		{"AccountSuspendedException", true},
	} {
		t.Run(tc.code, func(t *testing.T) {
			apiErr := &smithy.GenericAPIError{Code: tc.code, Message: "m"}
			err := ses.New(fakeClient{apiErr}).Send(t.Context(), email.Message{From: "a@example.com", To: []string{"b@example.com"}, Subject: "s", Text: "t"})
			if got := email.IsPermanent(err); got != tc.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tc.permanent)
			}
			var got smithy.APIError
			if !errors.As(err, &got) || got.ErrorCode() != tc.code {
				t.Errorf("the SES error is not in the chain: %v", err)
			}
		})
	}
	err := ses.New(fakeClient{errors.New("dial tcp: connection refused")}).Send(t.Context(), email.Message{To: []string{"b@example.com"}})
	if email.IsPermanent(err) {
		t.Errorf("a network error must be retryable: %v", err)
	}
}
