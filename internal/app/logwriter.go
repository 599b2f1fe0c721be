package app

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// BufferedWriter batches writes to an underlying writer and flushes them
// every interval and on Close. The API's audit and access records go
// through one, so a credential read makes no system call of its own; the
// price is that a record can reach the log up to one interval late, and a
// crash loses at most that interval's records.
type BufferedWriter struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewBufferedWriter starts the flusher. Close stops it.
func NewBufferedWriter(w io.Writer, every time.Duration) *BufferedWriter {
	b := &BufferedWriter{bw: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = b.Flush()
			case <-b.stop:
				return
			}
		}
	}()
	return b
}

// Write buffers p; a full buffer is written through at once.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bw.Write(p)
}

// Flush writes out what is buffered.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bw.Flush()
}

// Close stops the flusher and flushes what is left.
func (b *BufferedWriter) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	return b.Flush()
}
