package http_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/mock"
)

// TestCacheAnnotates: the cache gives each key the refresh times of the
// timings stored with it (the server's policy only for a key stored without
// them), and while a key is current its Expiration is never in the past,
// however overdue its rotation.
func TestCacheAnnotates(t *testing.T) {
	clk := mock.NewClock(t0)
	p := keyrot.DefaultPolicy()
	c := keyrothttp.NewCache(nil, p, keyrothttp.WithCacheClock(clk))
	if !c.Ready() {
		t.Error("a cache without a source is not ready")
	}
	stored := fixtures()[0]
	stored.Timings = keyrot.Timings{RotateEvery: 10 * time.Minute, DeactivateAfter: 4 * time.Minute, StepLateness: time.Minute}
	c.Publish(stored)
	c.Publish(fixtures()[1]) // no stored timings
	got, ok := c.Get("alice")
	if !ok {
		t.Fatal("alice not cached")
	}
	if want := t0.Add(11 * time.Minute); !got.NextRotation.Equal(want) {
		t.Errorf("NextRotation = %v, want %v (rotate_every + step lateness, from the secret)", got.NextRotation, want)
	}
	if want := t0.Add(13 * time.Minute); !got.Expiration.Equal(want) {
		t.Errorf("Expiration = %v, want %v (NextRotation + deactivate_after/2)", got.Expiration, want)
	}
	bob, _ := c.Get("bob")
	if want := fixtures()[1].CreateDate.Add(p.RotateEvery + p.StepLateness + p.DeactivateAfter/2); !bob.Expiration.Equal(want) {
		t.Errorf("bob's Expiration = %v, want %v (the server's policy for a key without stored timings)", bob.Expiration, want)
	}

	// The engine stops: an hour later the key still works and its
	// Expiration is still ahead, in every way the cache is read.
	clk.Set(t0.Add(time.Hour))
	got, _ = c.Get("alice")
	if want := clk.Now().Add(2 * time.Minute); !got.Expiration.Equal(want) {
		t.Errorf("overdue Expiration = %v, want %v (now + deactivate_after/2)", got.Expiration, want)
	}
	for _, cur := range c.Current() {
		if !cur.Expiration.After(clk.Now()) {
			t.Errorf("%s: Expiration %v is not after now %v", cur.UserName, cur.Expiration, clk.Now())
		}
	}
	if _, ok := c.Get("carol"); ok {
		t.Error("carol cached")
	}
}

// rotated returns c with its next key, promoted d after the first.
func rotated(c keyrot.Credentials, d time.Duration) keyrot.Credentials {
	c.AccessKeyID = c.AccessKeyID[:len(c.AccessKeyID)-4] + "NEW2"
	c.SecretAccessKey = "rotated-" + c.SecretAccessKey
	c.CreateDate, c.CurrentSince, c.Generation = c.CreateDate.Add(d), c.CurrentSince.Add(d), c.Generation+1
	return c
}

// TestCacheLoadKeepsNewerPublish: a slow load that read the old key never
// replaces a key that a rotation published meanwhile.
func TestCacheLoadKeepsNewerPublish(t *testing.T) {
	old := fixtures()
	reading, release := make(chan struct{}), make(chan struct{})
	src := &fakeSource{creds: old, beforeRead: func() { close(reading); <-release }}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy())
	done := make(chan error)
	go func() { done <- c.Load(context.Background()) }()
	<-reading
	newAlice := rotated(old[0], 5*time.Minute)
	c.Publish(newAlice)
	newUser := keyrot.Credentials{UserName: "carol", AccessKeyID: "AKIACAROL", SecretAccessKey: "y", CreateDate: t0}
	c.Publish(newUser)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get("alice"); got.AccessKeyID != newAlice.AccessKeyID {
		t.Errorf("alice = %s after load, want the published %s", got.AccessKeyID, newAlice.AccessKeyID)
	}
	if _, ok := c.Get("carol"); !ok {
		t.Error("a user published during the load was dropped")
	}
	if got, _ := c.Get("bob"); got.AccessKeyID != old[1].AccessKeyID {
		t.Errorf("bob = %s", got.AccessKeyID)
	}
	if !c.Ready() {
		t.Error("not ready after a load")
	}
}

func TestCacheLoadDropsUnmanaged(t *testing.T) {
	src := &fakeSource{creds: fixtures()}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy())
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	src.set(fixtures()[1:], nil)
	if err := c.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("alice"); ok {
		t.Error("a user the source no longer lists is still served")
	}
	if got, want := len(c.Current()), 2; got != want {
		t.Errorf("%d users, want %d", got, want)
	}
}

// TestCacheReadsOnlyMovedPointers: a load reads the values of the users
// whose pointer moved, and no other.
func TestCacheReadsOnlyMovedPointers(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{creds: fixtures()}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy())
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(src.reads(), ","), "alice,bob,ci-deploy"; got != want {
		t.Errorf("first load read %q, want %q", got, want)
	}
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := src.reads(); len(got) != 0 {
		t.Errorf("a load with no promotion read %v", got)
	}
	creds := fixtures()
	creds[1] = rotated(creds[1], 5*time.Minute)
	src.set(creds, nil)
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(src.reads(), ","), "bob"; got != want {
		t.Errorf("after bob's promotion the load read %q, want %q", got, want)
	}
	if got, _ := c.Get("bob"); got.AccessKeyID != creds[1].AccessKeyID {
		t.Errorf("bob = %s, want %s", got.AccessKeyID, creds[1].AccessKeyID)
	}
	// A published key the pointer names is confirmed, not read again.
	creds[0] = rotated(creds[0], 5*time.Minute)
	c.Publish(creds[0])
	src.set(creds, nil)
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := src.reads(); len(got) != 0 {
		t.Errorf("a load after a publish read %v", got)
	}
}

// TestCacheKeepsTheLastGoodKey: a user whose read fails (or every user,
// when the listing fails) keeps the key it had, marked stale with its age;
// the next good load replaces it.
func TestCacheKeepsTheLastGoodKey(t *testing.T) {
	ctx := context.Background()
	clk := mock.NewClock(t0)
	src := &fakeSource{creds: fixtures()}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(clk))
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	creds := fixtures()
	creds[0] = rotated(creds[0], 5*time.Minute)
	creds = append(creds, keyrot.Credentials{UserName: "dave", AccessKeyID: "AKIADAVE", SecretAccessKey: "d", CreateDate: t0, CurrentSince: t0})
	src.set(creds, nil)
	src.failRead("alice", errors.New("ThrottlingException: Rate exceeded"))
	src.failRead("dave", errors.New("AccessDeniedException: kms"))
	clk.Advance(7 * time.Second)

	err := c.Load(ctx)
	if err == nil || !strings.Contains(err.Error(), `"alice"`) || !strings.Contains(err.Error(), `"dave"`) || !strings.Contains(err.Error(), "2 of 4 users") {
		t.Fatalf("Load = %v, want alice's and dave's failures", err)
	}
	if got, _ := c.Get("alice"); got.AccessKeyID != fixtures()[0].AccessKeyID {
		t.Errorf("alice = %q, want her last good key", got.AccessKeyID)
	}
	if _, ok := c.Get("dave"); ok {
		t.Error("dave, never read, is served")
	}
	if got, want := c.Stale(), 7*time.Second; got != want {
		t.Errorf("Stale = %s, want %s", got, want)
	}

	// The whole listing fails: everyone is kept, and ages.
	src.set(creds, errors.New("ListSecrets: InternalServiceError"))
	clk.Advance(5 * time.Second)
	if err := c.Load(ctx); err == nil {
		t.Fatal("Load with a failing listing succeeded")
	}
	if got, want := len(c.Current()), 3; got != want {
		t.Errorf("%d users after a failed listing, want %d", got, want)
	}
	if got, want := c.Stale(), 12*time.Second; got != want {
		t.Errorf("Stale = %s, want %s (alice, unconfirmed since t0)", got, want)
	}

	// Reads work again: the new key, nothing stale.
	src.set(creds, nil)
	src.failRead("alice", nil)
	src.failRead("dave", nil)
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get("alice"); got.AccessKeyID != creds[0].AccessKeyID {
		t.Errorf("alice = %q, want %q", got.AccessKeyID, creds[0].AccessKeyID)
	}
	if _, ok := c.Get("dave"); !ok {
		t.Error("dave not served after a good read")
	}
	if got := c.Stale(); got != 0 {
		t.Errorf("Stale = %s after a good load, want 0", got)
	}
}

// TestServerSendsCacheAge: each credential response says how long ago its
// key was confirmed current, and keyrot_cache_stale_seconds how long the
// oldest unconfirmed one has been served.
func TestServerSendsCacheAge(t *testing.T) {
	ctx := context.Background()
	clk := mock.NewClock(t0)
	src := &fakeSource{creds: fixtures()}
	cache := keyrothttp.NewCache(src, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(clk))
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	key, hash, _ := keyrothttp.GenerateAPIKey()
	reg := prometheus.NewRegistry()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}, List: true}}, Registry: reg}, cache)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{url: startHandler(t, srv.Handler())}
	age := func(path string) string {
		t.Helper()
		r := e.do(t, "GET", path, xkey(key))
		if r.status != 200 {
			t.Fatalf("GET %s = %d", path, r.status)
		}
		return r.header.Get("X-Keyrot-Cache-Age")
	}
	if got := age("/credentials/alice"); got != "0" {
		t.Errorf("fresh age = %q, want 0", got)
	}
	creds := fixtures()
	creds[0] = rotated(creds[0], 5*time.Minute)
	src.set(creds, nil)
	src.failRead("alice", errors.New("InternalServiceError"))
	clk.Advance(42 * time.Second)
	if err := cache.Load(ctx); err == nil {
		t.Fatal("want alice's read failure")
	}
	for path, want := range map[string]string{"/credentials/alice": "42", "/credentials/bob": "0", "/credentials": "42"} {
		if got := age(path); got != want {
			t.Errorf("%s: age %q, want %q", path, got, want)
		}
	}
	if got, want := staleGauge(t, reg), 42.0; got != want {
		t.Errorf("keyrot_cache_stale_seconds = %v, want %v", got, want)
	}
	src.failRead("alice", nil)
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := staleGauge(t, reg); got != 0 {
		t.Errorf("keyrot_cache_stale_seconds = %v after a good load, want 0", got)
	}
}

// TestServerUnreadUserIsUnavailable: a user the listing names but whose
// key was never read is answered 503 with Retry-After (retry), not 404
// (gone), until a read succeeds; a user nobody lists stays 404.
func TestServerUnreadUserIsUnavailable(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{creds: fixtures()}
	src.failRead("alice", errors.New("AccessDeniedException: kms"))
	cache := keyrothttp.NewCache(src, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(mock.NewClock(t0)))
	if err := cache.Load(ctx); err == nil {
		t.Fatal("want alice's read failure")
	}
	key, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "k", Hash: hash, Users: []string{"*"}}}, Registry: prometheus.NewRegistry()}, cache)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{url: startHandler(t, srv.Handler())}
	r := e.do(t, "GET", "/credentials/alice", xkey(key))
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, `"unavailable"`) {
		t.Errorf("unread alice: %d Retry-After %q %s, want 503 unavailable with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := e.do(t, "GET", "/credentials/nobody", xkey(key)); r.status != 404 {
		t.Errorf("unlisted user: %d, want 404", r.status)
	}
	src.failRead("alice", nil)
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, "GET", "/credentials/alice", xkey(key)); r.status != 200 {
		t.Errorf("alice after a good read: %d, want 200", r.status)
	}
}

func staleGauge(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keyrot_cache_stale_seconds" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no keyrot_cache_stale_seconds")
	return 0
}

func TestCacheRun(t *testing.T) {
	clk := mock.NewClock(t0)
	src := &fakeSource{creds: fixtures(), err: errors.New("throttled")}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(clk))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx, time.Minute) }()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	// Run waits on the clock once its first (failed) load is over.
	if err := clk.BlockUntil(wctx, 1); err != nil {
		t.Fatal(err)
	}
	if c.Ready() {
		t.Error("ready after a failed first load")
	}
	src.set(fixtures(), nil)
	clk.Advance(time.Minute) // the failed first load is retried on the next tick
	if err := clk.BlockUntil(wctx, 1); err != nil {
		t.Fatal(err)
	}
	if !c.Ready() {
		t.Error("not ready after a successful load")
	}
	if got, want := clk.Waits(), []time.Duration{time.Minute, time.Minute}; !slices.Equal(got, want) {
		t.Errorf("Run waited %v, want %v", got, want)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if err := c.Run(context.Background(), 0); err == nil {
		t.Error("Run accepted a zero interval")
	}
}
