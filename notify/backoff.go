package notify

import "time"

// MaxBackoff bounds every retry delay.
const MaxBackoff = 5 * time.Minute

// Backoff is the delay after the attempt-th failed attempt (1-based): first,
// doubled for each further attempt, at most MaxBackoff.
func Backoff(first time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}
