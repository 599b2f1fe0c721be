package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyrot/keyrot"
)

// Notifier is a keyrot.Notifier that emails people about key events. Notify
// only queues: one delivery goroutine renders, rate-limits, folds digests,
// sends and retries, so a slow or failing mail service never holds up a
// rotation.
type Notifier struct {
	cfg    Config
	sender Sender
	render *Renderer
	logger *slog.Logger
	clock  keyrot.Clock
	hook   func(kind keyrot.EventKind, err error)

	queue chan keyrot.Event
	flush chan chan struct{} // Flush requests, answered when all is delivered

	mu      sync.Mutex
	closed  bool
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ keyrot.Notifier = (*Notifier)(nil)

// Option configures a Notifier.
type Option func(*Notifier)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(n *Notifier) { n.logger = l } }

// WithClock sets the clock used for backoff, rate limiting and digests
// (default: the wall clock).
func WithClock(c keyrot.Clock) Option { return func(n *Notifier) { n.clock = c } }

// WithResultHook sets a function called once per message with its final
// outcome: nil when sent, the last error when it failed for good,
// ErrQueueFull when the event was dropped, ErrClosed when Close gave up on
// it. kind is the event kind, or KindDigest. It is called from the delivery
// goroutine (or from Notify for drops) and must not block.
func WithResultHook(h func(kind keyrot.EventKind, err error)) Option {
	return func(n *Notifier) { n.hook = h }
}

// NewNotifier validates cfg, parses the templates and returns a Notifier
// sending through s. Call Start to begin delivery and Close to drain.
func NewNotifier(cfg Config, s Sender, opts ...Option) (*Notifier, error) {
	if s == nil {
		return nil, errors.New("email: new notifier: nil sender")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("email: new notifier: %w", err)
	}
	r, err := NewRenderer(cfg)
	if err != nil {
		return nil, fmt.Errorf("email: new notifier: %w", err)
	}
	n := &Notifier{
		cfg:    cfg.withDefaults(),
		sender: s,
		render: r,
		logger: slog.Default(),
		clock:  keyrot.SystemClock{},
		hook:   func(keyrot.EventKind, error) {},
		done:   make(chan struct{}),
	}
	for _, o := range opts {
		o(n)
	}
	n.logger = n.logger.With("system", "email")
	n.queue = make(chan keyrot.Event, n.cfg.QueueSize)
	n.flush = make(chan chan struct{})
	return n, nil
}

// Start starts the delivery goroutine. Cancelling ctx stops delivery at
// once, abandoning what is queued; Close drains first.
func (n *Notifier) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return fmt.Errorf("email: start: %w", ErrClosed)
	case n.started:
		return errors.New("email: start: already started")
	}
	n.started = true
	ctx, n.cancel = context.WithCancel(ctx)
	go n.run(ctx)
	return nil
}

// Close stops accepting events and delivers what is queued, waiting for
// retries and the send rate, until ctx is done; then it abandons the rest,
// reporting each message to the result hook with ErrClosed. It returns
// ctx's error if it gave up.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	close(n.queue) // Notify sends under mu, so no send can follow
	started := n.started
	n.mu.Unlock()
	if !started {
		n.abandonQueued()
		return nil
	}
	select {
	case <-n.done:
		n.abandonQueued() // left only if Start's ctx stopped the worker
		return nil
	case <-ctx.Done():
		n.cancel()
		<-n.done
		n.abandonQueued()
		return fmt.Errorf("email: close: undelivered messages abandoned: %w", ctx.Err())
	}
}

// Flush delivers everything queued so far, digests included without
// waiting for their window, and returns once each message was sent or failed
// for good, or when ctx is done. A Lambda invocation calls it before it
// returns, since a frozen container delivers nothing.
func (n *Notifier) Flush(ctx context.Context) error {
	n.mu.Lock()
	started := n.started && !n.closed
	n.mu.Unlock()
	if !started {
		return nil
	}
	done := make(chan struct{})
	select {
	case n.flush <- done:
	case <-n.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("email: flush: %w", ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-n.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("email: flush: messages still undelivered: %w", ctx.Err())
	}
}

func (n *Notifier) abandonQueued() {
	count := 0
	for e := range n.queue {
		count++
		n.hook(e.Kind, ErrClosed)
	}
	if count > 0 {
		n.logger.Error("notifier closed with undelivered events", "events", count)
	}
}

// Notify queues e and returns at once. It sends every event it is given:
// whether a repeated warning is sent again is decided before, by the
// record the rotator keeps on the user's secret (keyrot.WarnRecord). If the
// queue is full the event is dropped, logged and reported; Notify then
// returns an error wrapping ErrQueueFull, as it does ErrClosed after Close.
func (n *Notifier) Notify(ctx context.Context, e keyrot.Event) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return fmt.Errorf("email: notify %s for user %q: %w", e.Kind, e.User, ErrClosed)
	}
	select {
	case n.queue <- e:
		n.mu.Unlock()
		return nil
	default:
	}
	n.mu.Unlock()
	n.logger.Warn("email queue full: event dropped",
		"event", string(e.Kind), "user", e.User, "key_id", e.KeyID, "queue_size", n.cfg.QueueSize)
	n.hook(e.Kind, ErrQueueFull)
	return fmt.Errorf("email: notify %s for user %q: %w", e.Kind, e.User, ErrQueueFull)
}

// outgoing is a message waiting to be sent. It holds its events, not the
// rendered message (a few kilobytes of text and HTML): a storm over a large
// fleet queues thousands of messages behind the send rate, and each is
// rendered when its turn comes.
type outgoing struct {
	kind   keyrot.EventKind
	events []keyrot.Event
	// digestTo is the recipient of a digest ("" for one event's message).
	digestTo string
	attempt  int // attempts made
	due      time.Time
	seq      uint64
}

// bucket collects one recipient's events for a digest.
type bucket struct {
	events  []keyrot.Event
	flushAt time.Time
}

// worker is the delivery goroutine's state.
type worker struct {
	n        *Notifier
	pending  []*outgoing
	buckets  map[string]*bucket
	order    []string // bucket recipients, oldest first
	nextSend time.Time
	seq      uint64
	interval time.Duration
}

func (n *Notifier) run(ctx context.Context) {
	defer close(n.done)
	w := &worker{
		n:        n,
		buckets:  map[string]*bucket{},
		interval: time.Duration(float64(time.Second) / n.cfg.SendRate),
	}
	queue := (<-chan keyrot.Event)(n.queue)
	var timer <-chan time.Time
	var timerAt time.Time
	var flushers []chan struct{}
	for {
		now := n.clock.Now()
		w.flushDigests(now, queue == nil || len(flushers) > 0)
		if w.sendOne(ctx, now) {
			if ctx.Err() != nil {
				w.abandon()
				return
			}
			continue
		}
		if len(flushers) > 0 && len(n.queue) == 0 && len(w.pending) == 0 && len(w.buckets) == 0 {
			for _, f := range flushers {
				close(f)
			}
			flushers = nil
		}
		if queue == nil && len(w.pending) == 0 && len(w.buckets) == 0 {
			return
		}
		if wake := w.wake(); wake.IsZero() {
			timer, timerAt = nil, time.Time{}
		} else if timer == nil || !wake.Equal(timerAt) {
			timer, timerAt = n.clock.After(wake.Sub(n.clock.Now())), wake
		}
		select {
		case e, ok := <-queue:
			if !ok {
				queue = nil // closed: drain what is left
				continue
			}
			w.accept(e, now)
			// Take what else is waiting before the next decision, so a
			// burst of events lands in the same digests in one go.
		batch:
			for range 256 {
				select {
				case e, ok := <-queue:
					if !ok {
						queue = nil
						break batch
					}
					w.accept(e, now)
				default:
					break batch
				}
			}
		case f := <-n.flush:
			flushers = append(flushers, f)
		case <-timer:
			timer, timerAt = nil, time.Time{}
		case <-ctx.Done():
			w.abandon()
			return
		}
	}
}

// accept renders e into a message due now, or adds it to its recipients'
// digests.
func (w *worker) accept(e keyrot.Event, now time.Time) {
	n := w.n
	if n.cfg.Digest <= 0 {
		if len(n.render.Recipients(e)) == 0 {
			n.logger.Debug("no recipients for event", "event", string(e.Kind), "user", e.User)
			return
		}
		w.push(&outgoing{kind: e.Kind, events: []keyrot.Event{e}, due: now})
		return
	}
	for _, r := range n.render.Recipients(e) {
		b := w.buckets[r]
		if b == nil {
			b = &bucket{flushAt: now.Add(n.cfg.Digest)}
			w.buckets[r] = b
			w.order = append(w.order, r)
		}
		b.events = append(b.events, e)
	}
}

func (w *worker) push(o *outgoing) {
	w.seq++
	o.seq = w.seq
	w.pending = append(w.pending, o)
}

// flushDigests turns the digests whose window has closed (all of them when
// draining) into messages.
func (w *worker) flushDigests(now time.Time, all bool) {
	kept := w.order[:0]
	for _, r := range w.order {
		b := w.buckets[r]
		if !all && now.Before(b.flushAt) {
			kept = append(kept, r)
			continue
		}
		delete(w.buckets, r)
		kind := KindDigest
		if len(b.events) == 1 {
			kind = b.events[0].Kind
		}
		w.push(&outgoing{kind: kind, events: b.events, digestTo: r, due: now})
	}
	w.order = kept
}

// wake is when the worker next has something to do (zero: nothing).
func (w *worker) wake() time.Time {
	var t time.Time
	earlier := func(c time.Time) {
		if t.IsZero() || c.Before(t) {
			t = c
		}
	}
	for _, r := range w.order {
		earlier(w.buckets[r].flushAt)
	}
	for _, o := range w.pending {
		earlier(later(o.due, w.nextSend))
	}
	return t
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendOne sends the oldest due message if the send rate allows, and
// reports whether it did.
func (w *worker) sendOne(ctx context.Context, now time.Time) bool {
	if now.Before(w.nextSend) {
		return false
	}
	idx := -1
	for i, o := range w.pending {
		if o.due.After(now) {
			continue
		}
		if idx < 0 || o.due.Before(w.pending[idx].due) || (o.due.Equal(w.pending[idx].due) && o.seq < w.pending[idx].seq) {
			idx = i
		}
	}
	if idx < 0 {
		return false
	}
	o := w.pending[idx]
	w.pending = slices.Delete(w.pending, idx, idx+1)
	m, err := w.render(o)
	if err != nil {
		n := w.n
		if len(o.events) == 1 {
			e := o.events[0]
			n.logger.Error("email render failed", "event", string(e.Kind), "user", e.User, "key_id", e.KeyID, "err", err)
		} else {
			n.logger.Error("email render failed", "event", string(o.kind), "to", o.digestTo, "events", len(o.events), "err", err)
		}
		n.hook(o.kind, Permanent(err))
		return true
	}
	w.nextSend = now.Add(w.interval)
	o.attempt++
	err = w.n.sender.Send(ctx, m)
	w.result(o, m, err, now)
	return true
}

// render renders o's message: one event's, or a digest's.
func (w *worker) render(o *outgoing) (Message, error) {
	if o.digestTo != "" {
		return w.n.render.RenderDigest(o.digestTo, o.events)
	}
	return w.n.render.Render(o.events[0])
}

func (w *worker) result(o *outgoing, m Message, err error, now time.Time) {
	n := w.n
	attrs := []any{"event", string(o.kind), "to", strings.Join(m.Recipients(), ", "), "attempt", o.attempt}
	if len(o.events) == 1 {
		attrs = append(attrs, "user", o.events[0].User, "key_id", o.events[0].KeyID)
	} else {
		attrs = append(attrs, "events", len(o.events))
	}
	if err == nil {
		n.logger.Info("email sent", attrs...)
		n.hook(o.kind, nil)
		return
	}
	attrs = append(attrs, "err", err)
	if IsPermanent(err) || o.attempt > n.cfg.Retries {
		n.logger.Error("email delivery failed", attrs...)
		n.hook(o.kind, err)
		return
	}
	delay := w.backoff(o.attempt)
	o.due = now.Add(delay)
	n.logger.Warn("email send failed, will retry", append(attrs, "retry_in", delay.String())...)
	w.push(o)
}

// backoff is the delay after the attempt-th failed attempt: Backoff,
// doubled each time, at most DefaultMaxBackoff.
func (w *worker) backoff(attempt int) time.Duration {
	return keyrot.Backoff{Initial: w.n.cfg.Backoff, Max: DefaultMaxBackoff}.Delay(attempt)
}

// abandon reports every message not yet delivered.
func (w *worker) abandon() {
	n := w.n
	count := 0
	for _, o := range w.pending {
		count++
		n.hook(o.kind, ErrClosed)
	}
	for _, r := range w.order {
		count++
		kind := KindDigest
		if b := w.buckets[r]; len(b.events) == 1 {
			kind = b.events[0].Kind
		}
		n.hook(kind, ErrClosed)
	}
	if count > 0 {
		n.logger.Error("email delivery stopped with undelivered messages", "messages", count)
	}
	w.pending, w.order, w.buckets = nil, nil, map[string]*bucket{}
}
