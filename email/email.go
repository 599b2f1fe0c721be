package email

import (
	"context"
	"errors"
	"log/slog"
	"strings"
)

// Message is one email, ready for a Sender. Text and HTML are the two
// alternatives of a multipart/alternative body.
type Message struct {
	From    string
	To, Cc  []string
	Subject string
	Text    string
	HTML    string
	// Headers are extra headers (X-Keyrot-Event, X-Keyrot-User, ...) that
	// mail filters can match on. Senders that cannot set headers drop them.
	Headers map[string]string
}

// Recipients returns To and Cc together.
func (m Message) Recipients() []string {
	return append(append([]string(nil), m.To...), m.Cc...)
}

// Sender delivers one message. An error wrapped with Permanent is not
// retried; any other error is retried with backoff by the Notifier.
// Implementations: ses.Sender, smtp.Sender, LogSender.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, m Message) error

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, m Message) error { return f(ctx, m) }

// Errors the Notifier reports to its result hook and returns from Notify.
var (
	// ErrQueueFull: Notify dropped an event because the delivery queue was full.
	ErrQueueFull = errors.New("email: delivery queue full, event dropped")
	// ErrClosed: the Notifier is closed; the event was not queued, or was
	// still undelivered when Close gave up.
	ErrClosed = errors.New("email: notifier closed")
)

// deliveryError marks an error as permanent or retryable.
type deliveryError struct {
	err       error
	permanent bool
}

func (e *deliveryError) Error() string { return e.err.Error() }
func (e *deliveryError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the message was rejected, the
// sender identity is not verified, the request is malformed. The Notifier
// reports it at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &deliveryError{err: err, permanent: true}
}

// Retryable marks err as transient (throttling, a 5xx, a dropped
// connection). Unmarked errors are treated as retryable too; Retryable makes
// the intent explicit and overrides a Permanent further down the chain.
// Retryable(nil) is nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &deliveryError{err: err, permanent: false}
}

// IsPermanent reports whether err, or the outermost classified error in its
// chain, was marked with Permanent.
func IsPermanent(err error) bool {
	var d *deliveryError
	if errors.As(err, &d) {
		return d.permanent
	}
	return false
}

// LogSender writes a one-line summary of each message to a logger instead
// of sending it: for development and dry runs. It never logs the body.
type LogSender struct {
	Logger *slog.Logger
}

var _ Sender = (*LogSender)(nil)

// Send logs m's sender, recipients, subject and size.
func (s *LogSender) Send(ctx context.Context, m Message) error {
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "email (log sender, not delivered)",
		slog.String("from", m.From),
		slog.String("to", strings.Join(m.Recipients(), ", ")),
		slog.String("subject", m.Subject),
		slog.String("event", m.Headers[HeaderEvent]),
		slog.Int("text_bytes", len(m.Text)),
		slog.Int("html_bytes", len(m.HTML)),
	)
	return nil
}
