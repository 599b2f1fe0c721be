package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/mock"
)

// countingSource counts observations and fails when err is set.
type countingSource struct {
	n   int
	err error
}

func (c *countingSource) Snapshot(context.Context) (fleet.Snapshot, error) {
	c.n++
	if c.err != nil {
		return fleet.Snapshot{}, c.err
	}
	return fleet.Snapshot{Users: []fleet.User{{Name: fmt.Sprint("pass ", c.n)}}}, nil
}

func TestCached(t *testing.T) {
	ctx := context.Background()
	clock := mock.NewClock(t0)
	src := &countingSource{}
	c := fleet.NewCached(src, 30*time.Second, clock)
	get := func() (string, error) {
		s, err := c.Snapshot(ctx)
		if len(s.Users) == 0 {
			return "", err
		}
		return s.Users[0].Name, err
	}
	if got, _ := get(); got != "pass 1" {
		t.Fatalf("first snapshot = %q", got)
	}
	clock.Advance(29 * time.Second)
	if got, _ := get(); got != "pass 1" || src.n != 1 {
		t.Errorf("within max age: %q after %d observations, want the cached one", got, src.n)
	}
	clock.Advance(time.Second)
	if got, _ := get(); got != "pass 2" {
		t.Errorf("after max age: %q, want a new observation", got)
	}
	src.err = errors.New("iam: throttled")
	clock.Advance(time.Minute)
	got, err := get()
	if got != "pass 2" || !errors.Is(err, src.err) {
		t.Errorf("failed observation: %q, %v; want the last good snapshot and the error", got, err)
	}
	if _, _ = get(); src.n != 3 {
		t.Errorf("a failure is observed again within max age: %d observations", src.n)
	}
}

// TestCachedOneObservationAtATime: a viewer who arrives while another's
// observation runs waits for it, and gives up when its own request ends.
func TestCachedOneObservationAtATime(t *testing.T) {
	src := &gateSource{entered: make(chan struct{}), release: make(chan struct{})}
	c := fleet.NewCached(src, time.Minute, keyrot.SystemClock{})
	done := make(chan error)
	go func() {
		_, err := c.Snapshot(context.Background())
		done <- err
	}()
	<-src.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Snapshot(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Snapshot while another observes, on an ended request = %v, want context.Canceled", err)
	}
	close(src.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Snapshot(context.Background()); err != nil || src.n != 1 {
		t.Errorf("after the observation: err %v, %d observations; want the cached one", err, src.n)
	}
}

// gateSource signals entered and waits for release.
type gateSource struct {
	entered, release chan struct{}
	n                int
}

func (g *gateSource) Snapshot(context.Context) (fleet.Snapshot, error) {
	g.n++
	close(g.entered)
	<-g.release
	return fleet.Snapshot{}, nil
}

func TestEventLog(t *testing.T) {
	l := fleet.NewEventLog(2, t0)
	for i, kind := range []keyrot.EventKind{keyrot.EventKeyCreated, keyrot.EventKeyDeactivated, keyrot.EventKeyDeleted} {
		l.Add(keyrot.Event{User: "alice", Kind: kind, Time: t0.Add(time.Duration(i) * time.Minute)})
	}
	l.Add(keyrot.Event{User: "bob", Kind: keyrot.EventKeyCreated})
	got := l.Recent("alice")
	if len(got) != 2 || got[0].Kind != keyrot.EventKeyDeleted || got[1].Kind != keyrot.EventKeyDeactivated {
		t.Errorf("Recent(alice) = %+v, want the last two, newest first", got)
	}
	if len(l.Recent("carol")) != 0 || !l.Since().Equal(t0) {
		t.Errorf("Recent(carol) = %v, Since = %s", l.Recent("carol"), l.Since())
	}
}
