package notify

import (
	"errors"
	"time"
)

// Errors a Queue reports to its result hook and returns from Notify.
var (
	// ErrQueueFull: Notify dropped an event because the target's queue was full.
	ErrQueueFull = errors.New("notify: delivery queue full, event dropped")
	// ErrClosed: the Queue is closed; the event was not queued, or was still
	// undelivered when Close gave up.
	ErrClosed = errors.New("notify: queue closed")
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (the receiver rejected the
// request: 4xx other than 429, a validation error). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// retryAfterError carries the delay a receiver asked for (429 Retry-After).
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter marks err as retryable no sooner than d (at most MaxBackoff).
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err, d}
}

// retryAfter is the delay err asks for, if any.
func retryAfter(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
