// Package ses sends keyrot's email through Amazon SES v2 SendEmail: a
// simple message with a text and an HTML part, from the verified identity
// in notify.sender. It classifies SES errors for the email Notifier:
// throttling is retried, a rejected message is not.
package ses

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"

	"github.com/keyrot/keyrot/email"
)

// SESAPI is the part of the SES v2 client the Sender uses.
type SESAPI interface {
	SendEmail(ctx context.Context, params *sesv2.SendEmailInput, optFns ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
}

// Sender is an email.Sender on SES v2.
type Sender struct {
	client           SESAPI
	configurationSet string
}

var _ email.Sender = (*Sender)(nil)

// Option configures a Sender.
type Option func(*Sender)

// WithConfigurationSet sends through an SES configuration set (for event
// publishing: bounces, complaints, deliveries).
func WithConfigurationSet(name string) Option {
	return func(s *Sender) { s.configurationSet = name }
}

// New returns a Sender using client. The Notifier retries with its own
// backoff and rate limit, so a client built with few SDK retries (for
// example RetryMaxAttempts 1) keeps one slow message from holding the
// queue.
func New(client SESAPI, opts ...Option) *Sender {
	s := &Sender{client: client}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Permanent SES error codes: retrying sends the same request to the same
// refusal. Throttling and 5xx are retried.
var permanentCodes = []string{
	"MessageRejected",
	"MailFromDomainNotVerifiedException",
	"BadRequestException",
	"AccountSuspendedException",
	"SendingPausedException",
	"NotFoundException",
}

var retryableCodes = []string{
	"TooManyRequestsException",
	"LimitExceededException",
	"InternalServiceErrorException",
	"Throttling",
	"ThrottlingException",
}

// Send sends m with SendEmail. Errors wrap the SES error, marked with
// email.Permanent or email.Retryable.
func (s *Sender) Send(ctx context.Context, m email.Message) error {
	if len(m.To)+len(m.Cc) == 0 {
		return email.Permanent(fmt.Errorf("ses: send %q: no recipients", m.Subject))
	}
	msg := &types.Message{
		Subject: &types.Content{Data: aws.String(m.Subject), Charset: aws.String("UTF-8")},
		Body:    &types.Body{},
	}
	if m.Text != "" {
		msg.Body.Text = &types.Content{Data: aws.String(m.Text), Charset: aws.String("UTF-8")}
	}
	if m.HTML != "" {
		msg.Body.Html = &types.Content{Data: aws.String(m.HTML), Charset: aws.String("UTF-8")}
	}
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		msg.Headers = append(msg.Headers, types.MessageHeader{Name: aws.String(k), Value: aws.String(m.Headers[k])})
	}
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(m.From),
		Destination:      &types.Destination{ToAddresses: m.To, CcAddresses: m.Cc},
		Content:          &types.EmailContent{Simple: msg},
	}
	if s.configurationSet != "" {
		in.ConfigurationSetName = aws.String(s.configurationSet)
	}
	if _, err := s.client.SendEmail(ctx, in); err != nil {
		return classify(fmt.Errorf("ses: send %q to %q: %w", m.Subject, m.Recipients(), err))
	}
	return nil
}

func classify(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); {
		case slices.Contains(permanentCodes, code):
			return email.Permanent(err)
		case slices.Contains(retryableCodes, code):
			return email.Retryable(err)
		}
	}
	return email.Retryable(err)
}
