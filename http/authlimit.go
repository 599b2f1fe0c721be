package http

import (
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// AuthFailureLimit bounds failed authentication (a missing, wrong or
// malformed API key) per client address. Each address has a bucket of Burst
// failures that refills at one per Every; once it is empty, every further
// failure blocks the address for a delay that starts at BaseDelay and
// doubles with each failure, up to MaxDelay. While blocked, the address's
// requests for anything that needs an API key get 429 with Retry-After,
// before the key is even looked at, so a blocked guesser learns nothing.
// An address is forgotten once its bucket is full again and it has been
// quiet for MaxDelay after its last block.
//
// The address is the TCP peer's (an IPv6 address counts by its /64): behind
// a reverse proxy every client shares the proxy's address, so set the limit
// at the proxy instead, or raise Burst.
//
// Zero fields take the defaults below.
type AuthFailureLimit struct {
	Burst               int
	Every               time.Duration
	BaseDelay, MaxDelay time.Duration
	// Clients bounds the addresses remembered; when full, the one that
	// failed least recently is forgotten.
	Clients int
	// LogEvery is how often one address's failed requests are written to
	// the access log: the first at once, then one per LogEvery carrying
	// "suppressed", the count of those not written since. LogRate bounds
	// such records across all addresses, per second.
	LogEvery time.Duration
	LogRate  float64
	// Off disables the limit (failed requests are still logged sampled).
	Off bool
}

// Defaults for AuthFailureLimit's zero fields.
const (
	DefaultAuthFailureBurst    = 10
	DefaultAuthFailureEvery    = 6 * time.Second
	DefaultAuthFailureDelay    = time.Second
	DefaultAuthFailureMaxDelay = 5 * time.Minute
	DefaultAuthFailureClients  = 10000
	DefaultAuthFailureLogEvery = 10 * time.Second
	DefaultAuthFailureLogRate  = 10.0
)

func (l AuthFailureLimit) withDefaults() AuthFailureLimit {
	l.Burst = positiveOr(l.Burst, DefaultAuthFailureBurst)
	l.Every = positiveOr(l.Every, DefaultAuthFailureEvery)
	l.BaseDelay = positiveOr(l.BaseDelay, DefaultAuthFailureDelay)
	l.MaxDelay = max(positiveOr(l.MaxDelay, DefaultAuthFailureMaxDelay), l.BaseDelay)
	l.Clients = positiveOr(l.Clients, DefaultAuthFailureClients)
	l.LogEvery = positiveOr(l.LogEvery, DefaultAuthFailureLogEvery)
	l.LogRate = positiveOr(l.LogRate, DefaultAuthFailureLogRate)
	return l
}

// positiveOr is v, or def when v is zero or negative.
func positiveOr[T int | float64 | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// failedAuth tracks failed authentication per client address: the limit,
// and the sampling of their log records.
type failedAuth struct {
	cfg AuthFailureLimit
	// tracked is how many addresses are remembered. While it is zero (no
	// recent failure from anyone) a request skips the table and its lock.
	tracked atomic.Int64

	mu      sync.Mutex
	clients *simplelru.LRU[netip.Addr, *failingClient]
	logs    *rate.Limiter // failed-auth records across all addresses
}

// failingClient is one address's record.
type failingClient struct {
	bucket       *rate.Limiter
	last         time.Time // its last failed request
	strikes      int       // failures since the bucket ran empty
	blockedUntil time.Time // zero when never blocked
	logged       time.Time // when its last record was written
	suppressed   int       // records not written since
}

func newFailedAuth(cfg AuthFailureLimit) *failedAuth {
	cfg = cfg.withDefaults()
	f := &failedAuth{cfg: cfg, logs: rate.NewLimiter(rate.Limit(cfg.LogRate), max(1, int(cfg.LogRate)))}
	// NewLRU fails only for a size <= 0, which withDefaults rules out.
	f.clients, _ = simplelru.NewLRU[netip.Addr, *failingClient](cfg.Clients, nil)
	return f
}

// clientAddr is the address a request's failures count against: the TCP
// peer's IP, an IPv6 address by its /64 (one host usually holds a whole
// /64). An unparsable RemoteAddr counts as the zero address.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// blocked returns how long addr must still wait, or 0 if it may try.
func (f *failedAuth) blocked(addr netip.Addr, now time.Time) time.Duration {
	if f.cfg.Off || f.tracked.Load() == 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sweep(now) // so that the table empties, and this check stops, once all are quiet
	c, ok := f.clients.Peek(addr)
	if !ok || !now.Before(c.blockedUntil) {
		return 0
	}
	return c.blockedUntil.Sub(now)
}

// fail records a failed authentication from addr at now.
func (f *failedAuth) fail(addr netip.Addr, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.client(addr, now)
	if f.cfg.Off || c.bucket.AllowN(now, 1) {
		return
	}
	c.strikes++
	delay := f.cfg.MaxDelay
	if shift := c.strikes - 1; shift < 32 {
		delay = min(f.cfg.MaxDelay, f.cfg.BaseDelay<<shift)
	}
	c.blockedUntil = now.Add(delay)
}

// admitLog reports whether a failed request from addr is written to the
// log now, and how many of its records were not written since the last one.
func (f *failedAuth) admitLog(addr netip.Addr, now time.Time) (write bool, suppressed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.client(addr, now)
	if (!c.logged.IsZero() && now.Sub(c.logged) < f.cfg.LogEvery) || !f.logs.AllowN(now, 1) {
		c.suppressed++
		return false, 0
	}
	suppressed, c.suppressed, c.logged = c.suppressed, 0, now
	return true, suppressed
}

// client returns addr's record, made if new, after forgetting the
// addresses that have gone quiet. Called with mu held.
func (f *failedAuth) client(addr netip.Addr, now time.Time) *failingClient {
	f.sweep(now)
	c, ok := f.clients.Get(addr)
	if !ok {
		c = &failingClient{bucket: rate.NewLimiter(rate.Every(f.cfg.Every), f.cfg.Burst)}
		f.clients.Add(addr, c) // evicts the least recently failed when full
	}
	c.last = now
	f.tracked.Store(int64(f.clients.Len()))
	return c
}

// sweep forgets, least recently failed first, the addresses that have been
// quiet (no failed request) for MaxDelay and LogEvery, are not blocked, and
// whose bucket is full again; a count of records not written is then dropped
// (the request metrics still count every request). Called with mu held.
func (f *failedAuth) sweep(now time.Time) {
	for {
		_, c, ok := f.clients.GetOldest()
		if !ok || !f.quiet(c, now) {
			break
		}
		f.clients.RemoveOldest()
	}
	f.tracked.Store(int64(f.clients.Len()))
}

func (f *failedAuth) quiet(c *failingClient, now time.Time) bool {
	quietFor := now.Sub(c.last)
	return quietFor >= f.cfg.MaxDelay && quietFor >= f.cfg.LogEvery && !now.Before(c.blockedUntil) &&
		c.bucket.TokensAt(now) >= float64(f.cfg.Burst)
}
