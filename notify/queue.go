package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/keyrot/keyrot"
)

// Deliverer sends one event to one target. Implementations:
// webhook.Deliverer, slack.Deliverer, eventbridge.Deliverer.
type Deliverer interface {
	// Deliver sends d. An error marked with Permanent is final; any other
	// is retried with backoff (RetryAfter sets the least delay). Errors
	// must not carry a secret (a Slack webhook URL, an HMAC secret).
	Deliver(ctx context.Context, d Delivery) error
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, d Delivery) error

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, d Delivery) error { return f(ctx, d) }

// Delivery is one attempt to deliver an event.
type Delivery struct {
	Event   keyrot.Event
	Payload Payload
	Attempt int // 1 for the first attempt
}

// Result is the outcome of an attempt, as counted by the result hook.
type Result string

// The results a Queue reports.
const (
	ResultOK      Result = "ok"      // delivered
	ResultRetried Result = "retried" // an attempt failed; another follows
	ResultFailed  Result = "failed"  // failed for good (permanent, retries spent, or abandoned)
	ResultDropped Result = "dropped" // the queue was full or closed
)

// Defaults applied to zero Config fields.
const (
	DefaultRetries = 5
	DefaultBackoff = 2 * time.Second
	// MaxBackoff bounds every retry delay.
	MaxBackoff            = 5 * time.Minute
	DefaultQueueSize      = 1000
	DefaultAttemptTimeout = 10 * time.Second
)

// Config configures a Queue.
type Config struct {
	// Target names the target in logs and metrics, e.g.
	// "webhook:hooks.example.com"; never a secret.
	Target string
	// Kinds, if not empty, are the only event kinds delivered.
	Kinds []keyrot.EventKind
	// Retries is how often a failed attempt is retried: 0 means 5, a
	// negative value none.
	Retries int
	// Backoff is the first retry's delay, doubled for each further retry
	// up to MaxBackoff; 0 means 2s.
	Backoff time.Duration
	// QueueSize bounds the events waiting; 0 means 1000.
	QueueSize int
	// AttemptTimeout bounds one attempt; 0 means 10s.
	AttemptTimeout time.Duration
}

func (c Config) withDefaults() Config {
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	return c
}

// Queue is a keyrot.Notifier for one target: Notify only queues, and one
// goroutine delivers the events in order, each with its retries.
type Queue struct {
	cfg     Config
	deliver Deliverer
	logger  *slog.Logger
	clock   keyrot.Clock
	hook    func(target string, r Result)

	queue chan keyrot.Event

	mu      sync.Mutex
	closed  bool
	started bool
	pending int           // events queued or being delivered
	idle    chan struct{} // closed while pending is 0
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ keyrot.Notifier = (*Queue)(nil)

// Option configures a Queue.
type Option func(*Queue)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(q *Queue) { q.logger = l } }

// WithClock sets the clock retries wait on (default: the wall clock).
func WithClock(c keyrot.Clock) Option { return func(q *Queue) { q.clock = c } }

// WithResultHook sets a function told the outcome of every attempt (and of
// every dropped event). It is called from the delivery goroutine, or from
// Notify for drops, and must not block.
func WithResultHook(h func(target string, r Result)) Option {
	return func(q *Queue) { q.hook = h }
}

// NewQueue returns a Queue delivering through d. Call Start to begin
// delivery and Close to drain.
func NewQueue(cfg Config, d Deliverer, opts ...Option) (*Queue, error) {
	if d == nil {
		return nil, errors.New("notify: new queue: nil deliverer")
	}
	if cfg.Target == "" {
		return nil, errors.New("notify: new queue: no target name")
	}
	idle := make(chan struct{})
	close(idle)
	q := &Queue{
		cfg: cfg.withDefaults(), deliver: d, logger: slog.Default(), clock: keyrot.SystemClock{},
		hook: func(string, Result) {}, idle: idle, done: make(chan struct{}),
	}
	for _, o := range opts {
		o(q)
	}
	q.logger = q.logger.With("system", "notify", "target", q.cfg.Target)
	q.queue = make(chan keyrot.Event, q.cfg.QueueSize)
	return q, nil
}

// Target is the target's name.
func (q *Queue) Target() string { return q.cfg.Target }

// Start starts the delivery goroutine. Cancelling ctx stops delivery at
// once, abandoning what is queued; Close drains first.
func (q *Queue) Start(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return fmt.Errorf("notify: start %s: %w", q.cfg.Target, ErrClosed)
	case q.started:
		return fmt.Errorf("notify: start %s: already started", q.cfg.Target)
	}
	q.started = true
	ctx, q.cancel = context.WithCancel(ctx)
	go q.run(ctx)
	return nil
}

// Notify queues e and returns at once; an event of a kind the target does
// not take is ignored. (Whether a warning is sent at all was decided before
// it got here, by the record on the user's secret: see keyrot.WarnRecord.)
// If the queue is full the event is dropped, logged and reported; Notify then returns an error wrapping ErrQueueFull (ErrClosed
// after Close).
func (q *Queue) Notify(_ context.Context, e keyrot.Event) error {
	if len(q.cfg.Kinds) > 0 && !slices.Contains(q.cfg.Kinds, e.Kind) {
		return nil
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return fmt.Errorf("notify: %s: %s for user %q: %w", q.cfg.Target, e.Kind, e.User, ErrClosed)
	}
	select {
	case q.queue <- e:
		q.pending++
		if q.pending == 1 {
			q.idle = make(chan struct{})
		}
		q.mu.Unlock()
		return nil
	default:
	}
	q.mu.Unlock()
	q.logger.Warn("delivery queue full: event dropped", "event", string(e.Kind), "user", e.User, "key_id", e.KeyID, "queue_size", q.cfg.QueueSize)
	q.hook(q.cfg.Target, ResultDropped)
	return fmt.Errorf("notify: %s: %s for user %q: %w", q.cfg.Target, e.Kind, e.User, ErrQueueFull)
}

// Flush waits until every event queued so far was delivered or failed for
// good, or ctx is done. A Lambda invocation calls it before it returns.
func (q *Queue) Flush(ctx context.Context) error {
	q.mu.Lock()
	idle, running := q.idle, q.started
	q.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-q.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify: flush %s: events still undelivered: %w", q.cfg.Target, ctx.Err())
	}
}

// Close stops accepting events and delivers what is queued, retries
// included, until ctx is done; then it abandons the rest (reported as
// failed) and returns ctx's error.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.queue) // Notify sends under mu, so no send can follow
	started := q.started
	q.mu.Unlock()
	if !started {
		q.abandonQueued()
		return nil
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		q.cancel()
		<-q.done
		return fmt.Errorf("notify: close %s: undelivered events abandoned: %w", q.cfg.Target, ctx.Err())
	}
}

func (q *Queue) run(ctx context.Context) {
	defer close(q.done)
	defer q.abandonQueued()
	for e := range q.queue {
		q.send(ctx, e)
		q.mu.Lock()
		q.pending--
		if q.pending == 0 {
			close(q.idle)
		}
		q.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// abandonQueued reports the events left in a closed or stopped queue.
func (q *Queue) abandonQueued() {
	count := 0
	for {
		select {
		case _, ok := <-q.queue:
			if !ok {
				q.reportAbandoned(count)
				return
			}
			count++
			q.hook(q.cfg.Target, ResultFailed)
		default:
			q.reportAbandoned(count)
			return
		}
	}
}

func (q *Queue) reportAbandoned(count int) {
	if count == 0 {
		return
	}
	q.mu.Lock()
	q.pending -= count
	if q.pending == 0 {
		close(q.idle)
	}
	q.mu.Unlock()
	q.logger.Error("delivery stopped with undelivered events", "events", count)
}

// send delivers e, retrying as its errors allow.
func (q *Queue) send(ctx context.Context, e keyrot.Event) {
	d := Delivery{Event: e, Payload: NewPayload(e)}
	attrs := []any{"event", string(e.Kind), "user", e.User, "event_id", d.Payload.ID}
	if e.KeyID != "" {
		attrs = append(attrs, "key_id", e.KeyID)
	}
	for d.Attempt = 1; ; d.Attempt++ {
		actx, cancel := context.WithTimeout(ctx, q.cfg.AttemptTimeout)
		err := q.deliver.Deliver(actx, d)
		cancel()
		if err == nil {
			q.logger.Info("event delivered", append(attrs, "attempt", d.Attempt)...)
			q.hook(q.cfg.Target, ResultOK)
			return
		}
		failed := append(attrs, "attempt", d.Attempt, "err", err)
		if ctx.Err() != nil || IsPermanent(err) || d.Attempt > q.cfg.Retries {
			q.logger.Error("event delivery failed", failed...)
			q.hook(q.cfg.Target, ResultFailed)
			return
		}
		delay := keyrot.Backoff{Initial: q.cfg.Backoff, Max: MaxBackoff}.Delay(d.Attempt)
		if after, ok := retryAfter(err); ok {
			delay = min(max(delay, after), MaxBackoff)
		}
		q.logger.Warn("event delivery failed, will retry", append(failed, "retry_in", delay.String())...)
		q.hook(q.cfg.Target, ResultRetried)
		select {
		case <-q.clock.After(delay):
		case <-ctx.Done():
			q.logger.Error("event delivery abandoned", attrs...)
			q.hook(q.cfg.Target, ResultFailed)
			return
		}
	}
}
