package fleet

import (
	"context"
	"time"

	"github.com/keyrot/keyrot"
)

// Source gives snapshots (an Observer).
type Source interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Cached reuses a snapshot for MaxAge, and observes once at a time however
// many viewers ask: a snapshot costs IAM calls for every user, taken from
// the rate limit the engine shares.
type Cached struct {
	src    Source
	maxAge time.Duration
	clock  keyrot.Clock
	sem    chan struct{} // held while observing; guards the fields below

	last    Snapshot
	lastErr error
	at      time.Time // when last was taken (zero: never)
}

// NewCached returns src cached for maxAge on clock.
func NewCached(src Source, maxAge time.Duration, clock keyrot.Clock) *Cached {
	return &Cached{src: src, maxAge: maxAge, clock: clock, sem: make(chan struct{}, 1)}
}

// Snapshot returns a snapshot at most MaxAge old, observing if there is
// none. When observing fails it returns the error with the last good
// snapshot (zero if there is none), so a view can show both.
func (c *Cached) Snapshot(ctx context.Context) (Snapshot, error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return Snapshot{}, context.Cause(ctx)
	}
	defer func() { <-c.sem }()
	if !c.at.IsZero() && c.clock.Now().Sub(c.at) < c.maxAge {
		return c.last, c.lastErr
	}
	s, err := c.src.Snapshot(ctx)
	c.at = c.clock.Now()
	if err != nil {
		c.lastErr = err
		return c.last, err
	}
	c.last, c.lastErr = s, nil
	return s, nil
}
