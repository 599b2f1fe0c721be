package keyrot

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// Scheduler runs the Rotator for as long as its context lives: each user is
// reconciled at the moment its next step falls due (to the second, not on a
// coarse poll), and every user is re-observed every Resync to pick up drift
// made outside keyrot.
type Scheduler struct {
	Rotator *Rotator
	Clock   Clock
	Logger  *slog.Logger
	// Resync is how often every user is re-observed (default 1m).
	Resync time.Duration
	// RetryAfter is how soon a failed user is tried again (default 30s).
	RetryAfter time.Duration
	// OnPass, if set, is called after every pass (metrics, tests).
	OnPass func(Summary)
}

// minPassGap is the least time between two passes.
const minPassGap = time.Second

// Run reconciles until ctx is done, then returns nil once the step in
// flight has finished. It returns an error only if it could not start.
func (s *Scheduler) Run(ctx context.Context) error {
	clock := s.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("system", "scheduler")
	resync := s.Resync
	if resync <= 0 {
		resync = time.Minute
	}
	retry := s.RetryAfter
	if retry <= 0 {
		retry = 30 * time.Second
	}

	due := map[string]time.Time{} // user -> when it next needs a pass
	var lastFull time.Time
	for ctx.Err() == nil {
		now := clock.Now()
		var opts RunOptions
		full := lastFull.IsZero() || !now.Before(lastFull.Add(resync))
		if full {
			lastFull = now
			due = map[string]time.Time{}
		} else {
			for user, at := range due {
				if !now.Before(at) {
					opts.Users = append(opts.Users, user)
				}
			}
		}
		if full || len(opts.Users) > 0 {
			sum, err := s.Rotator.ReconcileAll(ctx, opts)
			if err != nil {
				log.Error("reconcile pass", "error", err)
				due = map[string]time.Time{}
				lastFull = now.Add(retry - resync) // a full pass again after retry
			}
			for _, res := range sum.Results {
				switch {
				case res.Err != nil:
					due[res.User] = clock.Now().Add(retry)
				case !res.NextAt.IsZero():
					due[res.User] = res.NextAt
				default:
					delete(due, res.User)
				}
			}
			if s.OnPass != nil {
				s.OnPass(sum)
			}
			log.Debug("pass done", "users", sum.Users, "created", sum.Created, "deactivated", sum.Deactivated, "deleted", sum.Deleted, "failed", sum.Failed)
		}
		wake := lastFull.Add(resync)
		for _, at := range due {
			if at.Before(wake) {
				wake = at
			}
		}
		wait := wake.Sub(clock.Now())
		if wait < minPassGap {
			// Something is due again at once (a step that keeps failing the
			// same way, a listing that lags): never spin.
			wait = minPassGap
		}
		select {
		case <-ctx.Done():
		case <-clock.After(wait):
		}
	}
	log.Info("scheduler stopped")
	return nil
}
