package http

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrot/keyrot"
)

// Source lists every managed user's current credentials (implemented by
// secretsmanager.Store with BatchGetSecretValue).
type Source interface {
	ListCurrent(ctx context.Context) ([]keyrot.Credentials, error)
}

// Cache holds each managed user's current credentials in memory for the
// API. Reads take no lock: they load an immutable snapshot. Publish (from a
// rotation in the same process) and Load (from the Source) swap in a new
// snapshot, so a hit never waits for Secrets Manager.
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
	c.snap.Store(newSnapshot(map[string]*entry{}))
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
	if c.clock.Now().Before(e.creds.NextRotation) {
		return e
	}
	return c.newEntry(e.creds, e.epoch)
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
	next[creds.UserName] = c.newEntry(creds, c.epoch)
	c.snap.Store(newSnapshot(next))
}

// Load replaces the cache with the Source's credentials. A key published
// while the Source was being read, or newer than what it returned, is kept:
// a slow read never brings back a key that a rotation has replaced.
func (c *Cache) Load(ctx context.Context) error {
	if c.src == nil {
		return nil
	}
	c.mu.Lock()
	start := c.epoch
	c.mu.Unlock()

	list, err := c.src.ListCurrent(ctx)
	if err != nil {
		return fmt.Errorf("cache: list current credentials: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snap.Load()
	next := make(map[string]*entry, len(list))
	for _, cr := range list {
		if cr.UserName == "" {
			continue
		}
		if e, ok := old.byUser[cr.UserName]; ok && !newer(cr, e.creds) {
			next[cr.UserName] = e
			continue
		}
		next[cr.UserName] = c.newEntry(cr, 0)
	}
	for u, e := range old.byUser {
		if _, ok := next[u]; !ok && e.epoch > start {
			next[u] = e // published during the read
		}
	}
	c.snap.Store(newSnapshot(next))
	c.ready.Store(true)
	return nil
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
				c.logger.Error("refresh failed; serving cached credentials", "err", err)
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

func (c *Cache) newEntry(creds keyrot.Credentials, epoch uint64) *entry {
	if creds.Timings == (keyrot.Timings{}) {
		creds.Timings = c.policy.Timings() // a secret written before timings were stored
	}
	creds = creds.Annotate(c.clock.Now())
	// Strings and times: encoding cannot fail.
	body, _ := json.Marshal(credentialsJSON(creds))
	cp, _ := json.Marshal(credentialProcessJSON(creds))
	return &entry{creds: creds, json: append(body, '\n'), credentialProcess: append(cp, '\n'), env: envLines(creds), epoch: epoch}
}

func newSnapshot(m map[string]*entry) *snapshot {
	s := &snapshot{byUser: m, sorted: make([]*entry, 0, len(m)), secrets: make(map[string]struct{}, len(m))}
	for _, e := range m {
		s.sorted = append(s.sorted, e)
		s.secrets[e.creds.SecretAccessKey] = struct{}{}
	}
	sort.Slice(s.sorted, func(i, j int) bool { return s.sorted[i].creds.UserName < s.sorted[j].creds.UserName })
	return s
}
