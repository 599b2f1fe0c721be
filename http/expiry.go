package http

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyrot/keyrot"
)

// DefaultKeyWarnBefore is how long before an API key expires it is first
// reported (api.key_warn_before).
const DefaultKeyWarnBefore = 14 * 24 * time.Hour

// ExpiryWarnings returns a warning event (keyrot.WarnAPIKeyExpiring) for
// each key that expires within before of now, or has expired. Keys without
// an expiry (the seed's API_KEY) and keys already replaced by a successor
// (keyrot apikey rotate: their expiry is the planned end of the overlap) get
// none. The summary holds only the key's name and expiry, never the key or
// its hash, and does not move between calls. Every call returns every
// expiring key: the caller keeps the record of what it already sent
// (keyrot.WarnRecord), so that each is sent once per quiet period, and
// again when the key expires.
func ExpiryWarnings(keys []APIKey, now time.Time, before time.Duration) []keyrot.Event {
	var events []keyrot.Event
	for _, k := range keys {
		if k.Expires.IsZero() || k.ReplacedBy != "" || k.Expires.Sub(now) > before {
			continue
		}
		at := k.Expires.UTC().Format(time.RFC3339)
		e := keyrot.Event{
			Kind:    keyrot.EventWarning,
			Warning: keyrot.WarnAPIKeyExpiring,
			APIKey:  k.Name,
			Time:    now,
		}
		if k.Expired(now) {
			e.Summary = fmt.Sprintf("API key %q expired at %s: requests with it get 401.", k.Name, at)
		} else {
			e.Summary = fmt.Sprintf("API key %q expires at %s.", k.Name, at)
			e.Next = "The API key stops working: requests with it get 401 \"API key expired\"."
			e.NextAt = k.Expires
		}
		events = append(events, e)
	}
	return events
}

// Keys returns the API keys the server accepts now.
func (s *Server) Keys() []APIKey {
	kr := s.keys.Load()
	out := make([]APIKey, len(kr.keys))
	copy(out, kr.keys)
	return out
}

// WarnExpiringKeys hands n a warning for every accepted key that expires
// within before (see ExpiryWarnings), at the server's clock. Call it on every
// key refresh, with n behind the record that drops repeats.
func (s *Server) WarnExpiringKeys(ctx context.Context, n keyrot.Notifier, before time.Duration) error {
	var errs []error
	for _, e := range ExpiryWarnings(s.Keys(), s.clock.Now(), before) {
		if err := n.Notify(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("http: warn about API key %q: %w", e.APIKey, err))
		}
	}
	return errors.Join(errs...)
}
