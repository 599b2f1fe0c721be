package app

import (
	"context"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/mock"
)

// TestAPIKeyWarningsOncePerQuietPeriod: the watcher's rounds warn about the
// same expiring API key every api.refresh; it is sent once per quiet
// period, again when it expires, and again at once when it comes back
// after its condition ended (a rotation, then a new expiry).
func TestAPIKeyWarningsOncePerQuietPeriod(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	clock := mock.NewClock(t0)
	n := &mock.Notifier{}
	w := &apiKeyWarnings{next: n, quiet: 24 * time.Hour, clock: clock, sent: map[string]keyrot.WarnRecord{}}
	ci := keyrothttp.APIKey{Name: "ci", Expires: t0.Add(30 * time.Hour)}
	deploy := keyrothttp.APIKey{Name: "deploy", Expires: t0.Add(5 * 24 * time.Hour)}
	round := func(keys ...keyrothttp.APIKey) {
		t.Helper()
		w.begin()
		for _, e := range keyrothttp.ExpiryWarnings(keys, clock.Now(), 14*24*time.Hour) {
			if err := w.Notify(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
		w.end()
	}
	sent := func(want int, why string) {
		t.Helper()
		if got := len(n.Events()); got != want {
			t.Fatalf("%s: %d warnings sent, want %d", why, got, want)
		}
	}
	round(ci)
	sent(1, "first round")
	for range 10 {
		clock.Advance(time.Minute)
		round(ci)
	}
	sent(1, "ten more rounds within the quiet period")
	round(ci, deploy)
	sent(2, "another key")
	clock.Advance(24 * time.Hour)
	round(ci, deploy)
	sent(4, "after the quiet period, both again")
	clock.Advance(6 * time.Hour) // ci has expired
	round(ci, deploy)
	sent(5, "ci expired (deploy within its quiet period)")
	round(deploy) // ci replaced: its condition ended
	ci.Expires = clock.Now().Add(24 * time.Hour)
	round(ci, deploy)
	sent(6, "ci expiring again after its condition ended")
}
