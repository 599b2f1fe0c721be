package keyrot

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
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

// fullPass is the outcome of a pass over every user.
type fullPass struct {
	sum Summary
	err error
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
	record := func(sum Summary) {
		for _, res := range sum.Results {
			switch {
			case res.Busy:
				// Another pass holds the user; it reports the user's next time.
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
	// The full pass (every Resync) runs beside the passes for the users due
	// now, so a large fleet's resync, paced by the IAM rate limit, does not
	// hold back a step due to the second. The Rotator never works on one
	// user in two passes at once.
	var (
		lastFull    time.Time
		fullDone    = make(chan fullPass, 1)
		fullRunning bool
	)
	for ctx.Err() == nil {
		now := clock.Now()
		if !fullRunning && (lastFull.IsZero() || !now.Before(lastFull.Add(resync))) {
			lastFull, fullRunning = now, true
			go func() {
				sum, err := s.Rotator.ReconcileAll(ctx, RunOptions{})
				fullDone <- fullPass{sum, err}
			}()
		}
		var users []string
		for user, at := range due {
			if !now.Before(at) {
				users = append(users, user)
			}
		}
		// Most overdue first: a pass cut short leaves the least urgent.
		slices.SortFunc(users, func(a, b string) int {
			if c := due[a].Compare(due[b]); c != 0 {
				return c
			}
			return strings.Compare(a, b)
		})
		if len(users) > 0 {
			sum, err := s.Rotator.ReconcileAll(ctx, RunOptions{Users: users})
			if err != nil {
				log.Error("reconcile due users", "users", len(users), "error", err)
				for _, u := range users {
					due[u] = clock.Now().Add(retry)
				}
			}
			record(sum)
		}
		var timer <-chan time.Time
		if !fullRunning || len(due) > 0 {
			wake := lastFull.Add(resync)
			for _, at := range due {
				if at.Before(wake) {
					wake = at
				}
			}
			// Something due again at once (a step that keeps failing the
			// same way, a listing that lags) must not spin.
			timer = clock.After(max(wake.Sub(clock.Now()), minPassGap))
		}
		select {
		case <-ctx.Done():
		case <-timer:
		case full := <-fullDone:
			fullRunning = false
			if full.err != nil {
				log.Error("reconcile pass", "error", full.err)
				lastFull = clock.Now().Add(retry - resync) // again after retry
			}
			record(full.sum)
		}
	}
	if fullRunning {
		<-fullDone // the step in flight finishes
	}
	log.Info("scheduler stopped")
	return nil
}
