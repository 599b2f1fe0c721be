package testkit_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/keyrot/keyrot/internal/testkit"
)

func TestBufferWaitFor(t *testing.T) {
	var b testkit.Buffer
	go func() {
		for i := range 100 {
			fmt.Fprintf(&b, "line %d\n", i)
		}
	}()
	m, err := b.WaitFor(context.Background(), regexp.MustCompile(`line (9\d)\n`))
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != "90" {
		t.Errorf("first match %q, want 90", m[1])
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.WaitFor(ctx, regexp.MustCompile(`line 100`)); err == nil {
		t.Error("WaitFor returned without a match after ctx ended")
	}
}
