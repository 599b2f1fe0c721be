package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrot/keyrot"
)

// Source is where the cache learns each managed user's current key
// (implemented by secretsmanager.Store): a cheap listing of the pointers,
// made every poll, and a read of the values for the users whose pointer
// moved.
type Source interface {
	// Pointers lists every managed user's current-key pointer, reading no
	// secret value. A user it leaves out is no longer managed.
	Pointers(ctx context.Context) ([]keyrot.KeyPointer, error)
	// ReadCurrent reads the keys ptrs point at; a user whose read failed is
	// in failed, with the reason, and not in creds.
	ReadCurrent(ctx context.Context, ptrs []keyrot.KeyPointer) (creds []keyrot.Credentials, failed map[string]error)
}

// Cache holds each managed user's current credentials in memory for the
// API. Reads take no lock: they load an immutable snapshot. Publish (from a
// rotation in the same process) and Load (from the Source) swap in a new
// snapshot, so a hit never waits for Secrets Manager.
//
// Load keeps a user's last good key when that user's read fails (or the
// whole listing does), and drops only the users the Source no longer
// lists. Each entry remembers when a Load (or Publish) last confirmed it
// current: the server sends that age as X-Keyrot-Cache-Age, and Stale is the
// oldest age among the entries the last Load could not confirm.
type Cache struct {
	src    Source
	policy keyrot.Policy
	clock  keyrot.Clock
	logger *slog.Logger

	snap  atomic.Pointer[snapshot]
	ready atomic.Bool

	mu    sync.Mutex // serialises writers
	epoch uint64     // counts Publish calls, under mu
}

var _ keyrot.CredentialsPublisher = (*Cache)(nil)

// snapshot is an immutable view of the cache.
type snapshot struct {
	byUser  map[string]*entry
	unread  map[string]struct{} // listed by the Source, never read: served 503, not 404
	sorted  []*entry            // by user name
	secrets map[string]struct{} // the secret access keys, to keep them out of audit records
}

// entry is one user's credentials with the bodies served for them in each
// format, rendered once when the credentials arrive rather than on every
// read (nothing in them, Expiration and NextRotation included, changes
// between reads).
type entry struct {
	creds             keyrot.Credentials
	json              []byte // FormatJSON
	credentialProcess []byte // FormatCredentialProcess
	env               []byte // FormatEnv
	epoch             uint64 // the Publish that set it, 0 for a Load

	// confirmed is when a Load last found the entry current (or it was
	// published), in Unix nanoseconds; stale is set while the last Load
	// could not confirm it. Both change in place, under Cache.mu.
	confirmed atomic.Int64
	stale     atomic.Bool

	// late is the entry rendered again for one second past its
	// NextRotation (an overdue key's Expiration moves with the clock), kept
	// for that second: a stalled fleet costs a render per user per second,
	// not per request. lateAt is the Unix second a late rendering is for.
	late   atomic.Pointer[entry]
	lateAt int64
}

// CacheOption configures a Cache.
type CacheOption func(*Cache)

// WithCacheClock sets the clock Run waits with.
func WithCacheClock(c keyrot.Clock) CacheOption { return func(cc *Cache) { cc.clock = c } }

// WithCacheLogger sets the logger for background refreshes.
func WithCacheLogger(l *slog.Logger) CacheOption { return func(c *Cache) { c.logger = l } }

// NewCache returns an empty cache that fills from src (which may be nil
// when only Publish feeds it) and annotates credentials with policy.
func NewCache(src Source, policy keyrot.Policy, opts ...CacheOption) *Cache {
	c := &Cache{src: src, policy: policy, clock: keyrot.SystemClock{}, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(c)
	}
	c.logger = c.logger.With("system", "cache")
	c.snap.Store(newSnapshot(map[string]*entry{}, nil))
	if src == nil {
		c.ready.Store(true)
	}
	return c
}

// Get returns the user's current credentials, annotated with NextRotation
// and Expiration.
func (c *Cache) Get(user string) (keyrot.Credentials, bool) {
	e, ok := c.getEntry(user)
	if !ok {
		return keyrot.Credentials{}, false
	}
	return e.creds, true
}

// getEntry is Get with the encoded JSON body.
// Unread reports whether user is managed (the Source lists it) but the
// cache holds no key for it because every read of it failed: the API
// answers 503, not 404, so that a consumer retries rather than gives up.
func (c *Cache) Unread(user string) bool {
	_, ok := c.snap.Load().unread[user]
	return ok
}

func (c *Cache) getEntry(user string) (*entry, bool) {
	e, ok := c.snap.Load().byUser[user]
	if ok {
		e = c.fresh(e)
	}
	return e, ok
}

// fresh returns e, or e rendered anew if its rotation is overdue: then its
// Expiration moves with the clock, so that a stalled engine never hands
// consumers a past Expiration for a key that still works.
func (c *Cache) fresh(e *entry) *entry {
	now := c.clock.Now()
	if now.Before(e.creds.NextRotation) {
		return e
	}
	sec := now.Unix()
	if l := e.late.Load(); l != nil && l.lateAt == sec {
		return l
	}
	// Rendered at the whole second: the Expiration it gives is at most a
	// second early, never late.
	f := c.newEntry(e.creds, e.epoch, time.Unix(sec, 0))
	f.confirmed.Store(e.confirmed.Load())
	f.stale.Store(e.stale.Load())
	f.lateAt = sec
	e.late.Store(f)
	return f
}

// entries returns every entry, sorted by user name; callers must not modify it.
func (c *Cache) entries() []*entry {
	es := c.snap.Load().sorted
	now := c.clock.Now()
	for i, e := range es {
		if !now.Before(e.creds.NextRotation) {
			out := make([]*entry, len(es))
			copy(out, es)
			for j := i; j < len(out); j++ {
				out[j] = c.fresh(out[j])
			}
			return out
		}
	}
	return es
}

// isSecret reports whether s is one of the cached secret access keys.
func (c *Cache) isSecret(s string) bool {
	_, ok := c.snap.Load().secrets[s]
	return ok
}

// Current returns every user's current credentials, sorted by user name.
func (c *Cache) Current() []keyrot.Credentials {
	es := c.entries()
	out := make([]keyrot.Credentials, len(es))
	for i, e := range es {
		out[i] = e.creds
	}
	return out
}

// Ready reports whether the cache has loaded from its Source once (or has
// no Source).
func (c *Cache) Ready() bool { return c.ready.Load() }

// Publish makes creds the user's current credentials at once. The rotator
// calls it the moment a new key is promoted.
func (c *Cache) Publish(creds keyrot.Credentials) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	old := c.snap.Load()
	next := make(map[string]*entry, len(old.byUser)+1)
	for u, e := range old.byUser {
		next[u] = e
	}
	next[creds.UserName] = c.newEntry(creds, c.epoch, c.clock.Now())
	c.snap.Store(newSnapshot(next, old.unread))
}

// Load brings the cache in step with the Source: it lists the pointers,
// keeps every entry whose pointer has not moved, and reads the rest. A user
// whose read failed keeps its last good entry (marked stale); a user the
// listing leaves out is dropped. A key published while the Source was being
// read, or newer than what it returned, is kept: a slow read never brings
// back a key that a rotation has replaced. The error reports a failed
// listing (nothing changed) or the users whose read failed.
func (c *Cache) Load(ctx context.Context) error {
	if c.src == nil {
		return nil
	}
	c.mu.Lock()
	start := c.epoch
	c.mu.Unlock()

	now := c.clock.Now()
	ptrs, err := c.src.Pointers(ctx)
	if err != nil {
		c.markStale()
		return fmt.Errorf("cache: list current keys: %w", err)
	}
	held := c.snap.Load().byUser
	var moved []keyrot.KeyPointer
	for _, p := range ptrs {
		if e, ok := held[p.UserName]; !ok || !p.Names(e.creds) {
			moved = append(moved, p)
		}
	}
	var (
		read   map[string]keyrot.Credentials
		failed map[string]error
	)
	if len(moved) > 0 {
		var list []keyrot.Credentials
		list, failed = c.src.ReadCurrent(ctx, moved)
		read = make(map[string]keyrot.Credentials, len(list))
		for _, cr := range list {
			read[cr.UserName] = cr
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load()
	next := make(map[string]*entry, len(ptrs))
	unread := map[string]struct{}{}
	var errs []error
	for _, p := range ptrs {
		e, had := old.byUser[p.UserName]
		cr, ok := read[p.UserName]
		switch {
		case had && p.Names(e.creds):
			e.confirmed.Store(now.UnixNano())
			e.stale.Store(false)
			next[p.UserName] = e
		case had && e.epoch > start && (!ok || !newer(cr, e.creds)):
			next[p.UserName] = e // published during this Load: newer than what it listed
		case ok:
			next[p.UserName] = c.newEntry(cr, 0, now)
		default:
			err := failed[p.UserName]
			if err == nil {
				err = errors.New("not returned by the read")
			}
			errs = append(errs, fmt.Errorf("user %q: %w", p.UserName, err))
			if had {
				e.stale.Store(true)
				next[p.UserName] = e // its last good key, still within its overlap
			} else {
				unread[p.UserName] = struct{}{}
			}
		}
	}
	for u, e := range old.byUser {
		if _, ok := next[u]; !ok && e.epoch > start {
			next[u] = e // published during the read
		}
	}
	c.snap.Store(newSnapshot(next, unread))
	c.ready.Store(true)
	if len(errs) > 0 {
		return fmt.Errorf("cache: %d of %d users not read, serving their last good key: %w", len(errs), len(ptrs), errors.Join(errs...))
	}
	return nil
}

// markStale marks every entry stale: a Load that could not list.
func (c *Cache) markStale() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.snap.Load().sorted {
		e.stale.Store(true)
	}
}

// age is how long ago a Load (or Publish) last confirmed e current.
func (c *Cache) age(e *entry) time.Duration {
	return max(0, c.clock.Now().Sub(time.Unix(0, e.confirmed.Load())))
}

// Stale is the age of the oldest entry the last Load could not confirm
// (its read failed, or the listing did); 0 when every entry is confirmed.
func (c *Cache) Stale() time.Duration {
	var oldest time.Duration
	for _, e := range c.snap.Load().sorted {
		if e.stale.Load() {
			oldest = max(oldest, c.age(e))
		}
	}
	return oldest
}

// newer reports whether a is a later key than b (or the same key with
// newer annotations).
func newer(a, b keyrot.Credentials) bool {
	if !a.CreateDate.Equal(b.CreateDate) {
		return a.CreateDate.After(b.CreateDate)
	}
	if a.AccessKeyID != b.AccessKeyID {
		return a.Generation > b.Generation
	}
	return a.CurrentSince.After(b.CurrentSince) || a.SecretAccessKey != b.SecretAccessKey
}

// Run loads the cache now (unless a Load already succeeded) and then every
// interval until ctx is done, logging failed loads (the cache keeps serving
// what it has). It returns ctx's error.
func (c *Cache) Run(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("cache: refresh interval must be positive, not %s", every)
	}
	// Loaded just before Run (as the server does at start): the first
	// refresh is one interval away.
	load := !c.Ready()
	for {
		if load {
			if err := c.Load(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("refresh incomplete; serving the last good keys", "err", err)
			}
		}
		load = true
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.clock.After(every):
		}
	}
}

func (c *Cache) newEntry(creds keyrot.Credentials, epoch uint64, now time.Time) *entry {
	if creds.Timings == (keyrot.Timings{}) {
		creds.Timings = c.policy.Timings() // a secret written before timings were stored
	}
	creds = creds.Annotate(now)
	// Strings and times: encoding cannot fail.
	body, _ := json.Marshal(credentialsJSON(creds))
	cp, _ := json.Marshal(credentialProcessJSON(creds))
	e := &entry{creds: creds, json: append(body, '\n'), credentialProcess: append(cp, '\n'), env: envLines(creds), epoch: epoch}
	e.confirmed.Store(now.UnixNano())
	return e
}

// newSnapshot makes a snapshot of m; unread are the users the Source listed
// but whose key could not be read (a user in m is never unread).
func newSnapshot(m map[string]*entry, unread map[string]struct{}) *snapshot {
	s := &snapshot{byUser: m, unread: make(map[string]struct{}, len(unread)), sorted: make([]*entry, 0, len(m)), secrets: make(map[string]struct{}, len(m))}
	for u := range unread {
		if _, ok := m[u]; !ok {
			s.unread[u] = struct{}{}
		}
	}
	for _, e := range m {
		s.sorted = append(s.sorted, e)
		s.secrets[e.creds.SecretAccessKey] = struct{}{}
	}
	sort.Slice(s.sorted, func(i, j int) bool { return s.sorted[i].creds.UserName < s.sorted[j].creds.UserName })
	return s
}
