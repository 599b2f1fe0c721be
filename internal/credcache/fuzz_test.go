package credcache_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/credcache"
	"github.com/keyrot/keyrot/mock"
)

// FuzzCacheFile: the cache file is outside input (a disk can corrupt it,
// another process can write anything there). Whatever it holds, Get with
// the API down never panics, and serves a key only if the file is whole:
// an access key id, a secret, and an Expiration still ahead.
func FuzzCacheFile(f *testing.F) {
	clk := mock.NewClock(t0)
	seedCache := &credcache.Cache{Dir: f.TempDir(), Now: clk.Now}
	if _, err := seedCache.Get(context.Background(), k, (&api{creds: key("AKIASEED", t0)}).fetch); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(seedCache.Path(k))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, int64(0))
	f.Add(good, int64(10*time.Minute))
	f.Add(good[:len(good)/2], int64(0))
	f.Add([]byte(`{"Version":1}`), int64(0))
	f.Add([]byte(`{"Version":1,"APIURL":"https://keyrot.example.com","User":"app","AccessKeyId":"A","SecretAccessKey":"S","FetchedAt":"2026-03-01T12:00:00Z","Expiration":"2099-01-01T00:00:00Z"}`), int64(0))
	f.Add([]byte("\x00\xff"), int64(0))
	down := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	dir := f.TempDir() // one file, rewritten by each input
	f.Fuzz(func(t *testing.T, body []byte, later int64) {
		clk := mock.NewClock(t0.Add(time.Duration(later % int64(24*time.Hour))))
		c := &credcache.Cache{Dir: dir, Now: clk.Now}
		if err := os.WriteFile(c.Path(k), body, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := c.Get(context.Background(), k, func(context.Context) (keyrot.Credentials, error) { return keyrot.Credentials{}, down })
		if err != nil {
			return
		}
		if r.Creds.AccessKeyID == "" || r.Creds.SecretAccessKey == "" || !clk.Now().Before(r.Creds.Expiration) {
			t.Fatalf("served from %q: %+v (source %v)", body, r.Creds, r.Source)
		}
		if r.AskAgainAt.After(r.Creds.Expiration) || !r.AskAgainAt.After(clk.Now()) {
			t.Fatalf("served from %q: ask again at %s, Expiration %s, now %s", body, r.AskAgainAt, r.Creds.Expiration, clk.Now())
		}
	})
}
