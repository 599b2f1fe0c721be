package notify_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/notify"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// attempts records the deliveries a Deliverer was asked for.
type attempts struct {
	mu   sync.Mutex
	got  []notify.Delivery
	errs []error // returned in turn; nil once spent
}

func (a *attempts) Deliver(_ context.Context, d notify.Delivery) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, d)
	if len(a.errs) == 0 {
		return nil
	}
	err := a.errs[0]
	a.errs = a.errs[1:]
	return err
}

func (a *attempts) list() []notify.Delivery {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

func startQueue(t *testing.T, cfg notify.Config, d notify.Deliverer, opts ...notify.Option) (*notify.Queue, *mock.DeliveryResults, *mock.Clock) {
	t.Helper()
	clock := mock.NewClock(t0)
	clock.SetAutoAdvance(true)
	res := &mock.DeliveryResults{}
	if cfg.Target == "" {
		cfg.Target = "test"
	}
	q, err := notify.NewQueue(cfg, d, append([]notify.Option{notify.WithClock(clock), notify.WithResultHook(res.Hook)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	return q, res, clock
}

func event(kind keyrot.EventKind, user string) keyrot.Event {
	return keyrot.Event{Kind: kind, User: user, KeyID: "AKIAEXAMPLE000000001", Time: t0, Summary: string(kind) + " for " + user}
}

func flush(t *testing.T, q *notify.Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestQueueRetries(t *testing.T) {
	boom := errors.New("503 Service Unavailable")
	for _, tc := range []struct {
		name      string
		errs      []error
		retries   int
		attempts  int
		results   []notify.Result
		waits     []time.Duration
		wantFinal notify.Result
	}{
		{name: "delivered at once", attempts: 1, results: []notify.Result{notify.ResultOK}},
		{name: "retried with doubling backoff until delivered", errs: []error{boom, boom}, attempts: 3,
			results: []notify.Result{notify.ResultRetried, notify.ResultRetried, notify.ResultOK}, waits: []time.Duration{2 * time.Second, 4 * time.Second}},
		{name: "a permanent error is not retried", errs: []error{notify.Permanent(boom)}, attempts: 1,
			results: []notify.Result{notify.ResultFailed}},
		{name: "retries are bounded", errs: []error{boom, boom, boom, boom}, retries: 2, attempts: 3,
			results: []notify.Result{notify.ResultRetried, notify.ResultRetried, notify.ResultFailed}, waits: []time.Duration{2 * time.Second, 4 * time.Second}},
		{name: "Retry-After lengthens the wait", errs: []error{notify.RetryAfter(boom, 30*time.Second)}, attempts: 2,
			results: []notify.Result{notify.ResultRetried, notify.ResultOK}, waits: []time.Duration{30 * time.Second}},
		{name: "Retry-After is capped", errs: []error{notify.RetryAfter(boom, time.Hour)}, attempts: 2,
			results: []notify.Result{notify.ResultRetried, notify.ResultOK}, waits: []time.Duration{notify.MaxBackoff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &attempts{errs: tc.errs}
			q, res, clock := startQueue(t, notify.Config{Retries: tc.retries}, d)
			if err := q.Notify(context.Background(), event(keyrot.EventKeyCreated, "alice")); err != nil {
				t.Fatal(err)
			}
			flush(t, q)
			got := d.list()
			if len(got) != tc.attempts {
				t.Fatalf("%d attempts, want %d", len(got), tc.attempts)
			}
			for i, a := range got {
				if a.Attempt != i+1 || a.Payload.ID != got[0].Payload.ID {
					t.Errorf("attempt %d: number %d, id %q: want %d and the first attempt's id %q", i, a.Attempt, a.Payload.ID, i+1, got[0].Payload.ID)
				}
			}
			if !slices.Equal(res.List(), tc.results) {
				t.Errorf("results = %v, want %v", res.List(), tc.results)
			}
			if !slices.Equal(clock.Waits(), tc.waits) {
				t.Errorf("waits = %v, want %v", clock.Waits(), tc.waits)
			}
		})
	}
}

func TestQueueFiltersKinds(t *testing.T) {
	d := &attempts{}
	q, _, _ := startQueue(t, notify.Config{Kinds: []keyrot.EventKind{keyrot.EventRotationFailed}}, d)
	for _, k := range []keyrot.EventKind{keyrot.EventKeyCreated, keyrot.EventRotationFailed, keyrot.EventWarning} {
		if err := q.Notify(context.Background(), event(k, "alice")); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, q)
	if got := d.list(); len(got) != 1 || got[0].Event.Kind != keyrot.EventRotationFailed {
		t.Errorf("delivered %+v, want only the rotation_failed event", got)
	}
}

// TestQueueNeverBlocks: a target that hangs fills its bounded queue; the
// engine's Notify returns at once and further events are dropped, counted.
func TestQueueNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	hang := notify.DelivererFunc(func(ctx context.Context, d notify.Delivery) error {
		started <- struct{}{}
		<-release
		return nil
	})
	q, res, _ := startQueue(t, notify.Config{QueueSize: 2}, hang)
	ctx := context.Background()
	_ = q.Notify(ctx, event(keyrot.EventKeyCreated, "u0"))
	<-started // the worker holds u0; the queue is empty
	for _, u := range []string{"u1", "u2"} {
		if err := q.Notify(ctx, event(keyrot.EventKeyCreated, u)); err != nil {
			t.Fatalf("notify %s: %v", u, err)
		}
	}
	if err := q.Notify(ctx, event(keyrot.EventKeyCreated, "u3")); !errors.Is(err, notify.ErrQueueFull) {
		t.Fatalf("notify on a full queue: %v, want ErrQueueFull", err)
	}
	if got := res.List(); !slices.Equal(got, []notify.Result{notify.ResultDropped}) {
		t.Errorf("results = %v, want one drop", got)
	}
	close(release)
	go func() {
		for range started {
		}
	}()
	flush(t, q)
	if got := res.List(); len(got) != 4 {
		t.Errorf("results = %v, want the drop and three deliveries", got)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(started)
	if err := q.Notify(ctx, event(keyrot.EventKeyCreated, "late")); !errors.Is(err, notify.ErrClosed) {
		t.Errorf("notify after close: %v, want ErrClosed", err)
	}
}

// TestQueueCloseGivesUp: Close waits for retries until its ctx ends, then
// abandons what is left and says so.
func TestQueueCloseGivesUp(t *testing.T) {
	clock := mock.NewClock(t0) // not auto-advancing: a retry waits for ever
	res := &mock.DeliveryResults{}
	d := &attempts{errs: []error{errors.New("500"), errors.New("500")}}
	q, err := notify.NewQueue(notify.Config{Target: "t", QueueSize: 4}, d, notify.WithClock(clock), notify.WithResultHook(res.Hook))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = q.Notify(context.Background(), event(keyrot.EventKeyCreated, "a"))
	_ = q.Notify(context.Background(), event(keyrot.EventKeyCreated, "b"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntil(ctx, 1); err != nil { // the first event waits to retry
		t.Fatal(err)
	}
	gone, stop := context.WithCancel(context.Background())
	stop()
	if err := q.Close(gone); err == nil {
		t.Fatal("Close with a done ctx and a pending retry returned nil")
	}
	want := []notify.Result{notify.ResultRetried, notify.ResultFailed, notify.ResultFailed}
	if got := res.List(); !slices.Equal(got, want) {
		t.Errorf("results = %v, want %v", got, want)
	}
	if err := q.Flush(context.Background()); err != nil {
		t.Errorf("flush after close: %v", err)
	}
}

func TestEventID(t *testing.T) {
	a := event(keyrot.EventKeyCreated, "alice")
	b := a
	b.KeyID = "AKIAEXAMPLE000000002"
	again := a
	if notify.EventID(a) != notify.EventID(again) || notify.EventID(a) == notify.EventID(b) {
		t.Errorf("EventID is not a stable id of the event")
	}
	if p := notify.NewPayload(a); p.ID != notify.EventID(a) || p.Time != "2026-03-01T09:00:00Z" || p.Version != "1" || p.NextAt != "" {
		t.Errorf("payload = %+v", p)
	}
}
