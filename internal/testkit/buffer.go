package testkit

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use: a daemon's goroutines
// write logs to it while the test reads them.
type Buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed by the next Write, for WaitFor
	partial int           // Writes that did not end a line
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	if len(p) > 0 && p[len(p)-1] != '\n' {
		b.partial++
	}
	return b.b.Write(p)
}

// PartialWrites counts the Writes that did not end with a newline: a log
// writer that keeps records whole makes none.
func (b *Buffer) PartialWrites() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.partial
}

// WaitFor waits until what was written matches re and returns the match
// and its submatches, or fails when ctx ends first.
func (b *Buffer) WaitFor(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	for {
		b.mu.Lock()
		if m := re.FindStringSubmatch(b.b.String()); m != nil {
			b.mu.Unlock()
			return m, nil
		}
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		select {
		case <-written:
		case <-ctx.Done():
			return nil, fmt.Errorf("testkit: nothing matching %q was written (%w); got:\n%s", re, context.Cause(ctx), b.String())
		}
	}
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Bytes returns a copy of what was written so far.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

// Reset forgets what was written.
func (b *Buffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}
