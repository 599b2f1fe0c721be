package keyrot_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/mock"
)

func TestBackoffDelay(t *testing.T) {
	b := keyrot.Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := b.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := b.Delay(1000); got != b.Max {
		t.Errorf("Delay(1000) = %s, want the maximum %s", got, b.Max)
	}
	// An initial delay above the maximum is cut to it.
	if got := (keyrot.Backoff{Initial: time.Minute, Max: time.Second}).Delay(1); got != time.Second {
		t.Errorf("Delay over Max = %s, want 1s", got)
	}
}

func TestBackoffWaitsOnTheClock(t *testing.T) {
	clock := mock.NewClock(time.Unix(0, 0))
	b := keyrot.Backoff{Initial: time.Second, Max: time.Minute}
	done := make(chan error, 1)
	go func() { done <- b.Wait(context.Background(), clock, 3) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got, want := clock.Timers()[0], time.Unix(4, 0); !got.Equal(want) {
		t.Fatalf("waits until %s, want %s (4s after the third failure)", got, want)
	}
	clock.Advance(3 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before its delay", err)
	default:
	}
	clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("Wait = %v", err)
	}
}

func TestBackoffWaitEndsWithContext(t *testing.T) {
	clock := mock.NewClock(time.Unix(0, 0))
	cause := errors.New("stopping")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := (keyrot.Backoff{Initial: time.Hour, Max: time.Hour}).Wait(ctx, clock, 1); !errors.Is(err, cause) {
		t.Fatalf("Wait after cancel = %v, want %v", err, cause)
	}
}
