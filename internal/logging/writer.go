// Package logging is the one way out for a keyrot process's log records: a
// Writer per output stream that takes whole records, buffers them and
// writes them out whole, and a handler wrapper (Guard) that keeps every
// key of a record unique and every error's text redacted. app.NewLogger
// puts every slog handler keyrot uses (JSON, text, console) on top of
// them, so engine, access and audit records share one buffer, one lock
// and one format.
package logging

import (
	"io"
	"sync"
	"time"

	"github.com/keyrot/keyrot"
)

// Defaults of WriterOptions.
const (
	DefaultSize  = 64 << 10
	DefaultEvery = 100 * time.Millisecond
)

// WriterOptions bound how much a Writer holds and for how long.
type WriterOptions struct {
	// Size is how many bytes of records are held before they are written
	// out (default DefaultSize). A record larger than Size is written
	// alone, at once.
	Size int
	// Every bounds how long a record is held (default DefaultEvery); a
	// negative value writes every record through at once.
	Every time.Duration
	// Clock times Every (default the wall clock).
	Clock keyrot.Clock
}

// Writer buffers log records for an underlying writer. Each Write is one
// or more whole records (slog's handlers make one Write per record); the
// buffer is written out whole, so a record is never split across the
// underlying writes, and one mutex orders the records of every goroutine,
// so none interleave. The buffer goes out when the next record would not
// fit, Every after its first record, on Flush and on Close; after Close,
// records are written through. A crash loses at most Every's records: the
// price of a credential read making no system call of its own.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	size   int
	closed bool

	kick chan struct{} // the buffer went from empty to not: start the timer
	stop chan struct{}
	done chan struct{}
}

// NewWriter returns a Writer onto w and starts its timer. Close stops it.
func NewWriter(w io.Writer, o WriterOptions) *Writer {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	if o.Every == 0 {
		o.Every = DefaultEvery
	}
	if o.Clock == nil {
		o.Clock = keyrot.SystemClock{}
	}
	b := &Writer{w: w, size: o.Size, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if o.Every < 0 {
		b.size = 0
		close(b.done)
		return b
	}
	b.buf = make([]byte, 0, o.Size)
	go b.flushEvery(o.Clock, o.Every)
	return b
}

func (b *Writer) flushEvery(clock keyrot.Clock, every time.Duration) {
	defer close(b.done)
	for {
		select {
		case <-b.kick:
		case <-b.stop:
			return
		}
		select {
		case <-clock.After(every):
			_ = b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Write takes p, one or more whole records; a record missing its final
// newline gets one, so that it ends its line.
func (b *Writer) Write(p []byte) (int, error) {
	n := len(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > 0 && p[len(p)-1] != '\n' {
		p = append(p[:len(p):len(p)], '\n')
	}
	if len(b.buf)+len(p) > b.size && len(b.buf) > 0 {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	if b.closed || len(p) > b.size {
		if _, err := b.w.Write(p); err != nil {
			return 0, err
		}
		return n, nil
	}
	if len(b.buf) == 0 {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// Flush writes out what is held.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

// flushLocked writes the buffer in one Write. On an error the records are
// dropped: a log that cannot be written must not grow without bound.
func (b *Writer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close writes out what is held and stops the timer; later records are
// written through.
func (b *Writer) Close() error {
	b.mu.Lock()
	err := b.flushLocked()
	already := b.closed
	b.closed = true
	b.mu.Unlock()
	if !already && b.size > 0 {
		close(b.stop)
	}
	<-b.done
	return err
}
