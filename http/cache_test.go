package http_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

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

// gatedSource returns its credentials once released, so a Publish can
// happen while a Load is reading.
type gatedSource struct {
	creds   []keyrot.Credentials
	reading chan struct{}
	release chan struct{}
}

func (g *gatedSource) ListCurrent(ctx context.Context) ([]keyrot.Credentials, error) {
	close(g.reading)
	<-g.release
	return g.creds, nil
}

// TestCacheLoadKeepsNewerPublish: a slow load that read the old key never
// replaces a key that a rotation published meanwhile.
func TestCacheLoadKeepsNewerPublish(t *testing.T) {
	old := fixtures()
	src := &gatedSource{creds: old, reading: make(chan struct{}), release: make(chan struct{})}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy())
	done := make(chan error)
	go func() { done <- c.Load(context.Background()) }()
	<-src.reading
	rotated := old[0]
	rotated.AccessKeyID, rotated.SecretAccessKey, rotated.CreateDate, rotated.Generation = "AKIAALICE0000000NEW2", "x", t0.Add(5*time.Minute), 2
	c.Publish(rotated)
	newUser := keyrot.Credentials{UserName: "carol", AccessKeyID: "AKIACAROL", SecretAccessKey: "y", CreateDate: t0}
	c.Publish(newUser)
	close(src.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Get("alice"); got.AccessKeyID != rotated.AccessKeyID {
		t.Errorf("alice = %s after load, want the published %s", got.AccessKeyID, rotated.AccessKeyID)
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
	src.creds = src.creds[1:]
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

// countingSource counts loads and signals each one.
type countingSource struct {
	mu     sync.Mutex
	n      int
	loaded chan int
	err    error
}

func (s *countingSource) ListCurrent(context.Context) ([]keyrot.Credentials, error) {
	s.mu.Lock()
	s.n++
	n := s.n
	s.mu.Unlock()
	s.loaded <- n
	return fixtures(), s.err
}

// manualClock fires After only when the test ticks it.
type manualClock struct{ tick chan time.Time }

func (m *manualClock) Now() time.Time                       { return t0 }
func (m *manualClock) After(time.Duration) <-chan time.Time { return m.tick }

func TestCacheRun(t *testing.T) {
	src := &countingSource{loaded: make(chan int), err: errors.New("throttled")}
	clk := &manualClock{tick: make(chan time.Time)}
	c := keyrothttp.NewCache(src, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(clk))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx, time.Minute) }()
	if got := <-src.loaded; got != 1 {
		t.Fatalf("first load %d", got)
	}
	clk.tick <- t0 // the failed first load is retried on the next tick
	src.mu.Lock()
	src.err = nil
	src.mu.Unlock()
	if got := <-src.loaded; got != 2 {
		t.Fatalf("second load %d", got)
	}
	clk.tick <- t0 // Run is waiting again, so the second load has finished
	if !c.Ready() {
		t.Error("not ready after a successful load")
	}
	<-src.loaded
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
	if err := c.Run(context.Background(), 0); err == nil {
		t.Error("Run accepted a zero interval")
	}
}
