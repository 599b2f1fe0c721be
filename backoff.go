package keyrot

import (
	"context"
	"time"
)

// Backoff is an exponential retry delay: Initial after the first failed
// attempt, doubled after each further one, never more than Max. It is the
// one backoff of keyrot: the rotator's store and verify retries and the
// email notifier's resends use it.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Delay is the wait after the attempt-th failed attempt (counted from 1).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Wait waits on clock for Delay(attempt), or until ctx ends, whose cause
// it then returns.
func (b Backoff) Wait(ctx context.Context, clock Clock, attempt int) error {
	select {
	case <-clock.After(b.Delay(attempt)):
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
