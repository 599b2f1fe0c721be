package app_test

import (
	"sync"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/testkit"
)

func TestBufferedWriterFlushesOnCloseAndOnTime(t *testing.T) {
	var out testkit.Buffer
	w := app.NewBufferedWriter(&out, time.Hour)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = w.Write([]byte("record\n"))
			}
		}()
	}
	wg.Wait()
	if out.String() != "" {
		t.Fatal("written through before a flush")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := len(out.String()), 800*len("record\n"); got != want {
		t.Fatalf("after Close: %d bytes, want %d", got, want)
	}

	var timed testkit.Buffer
	w = app.NewBufferedWriter(&timed, 10*time.Millisecond)
	defer w.Close()
	_, _ = w.Write([]byte("x\n"))
	deadline := time.Now().Add(5 * time.Second)
	for timed.String() == "" {
		if time.Now().After(deadline) {
			t.Fatal("not flushed by the ticker")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
