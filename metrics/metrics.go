// Package metrics holds keyrot's Prometheus collectors: HTTP requests and
// latency, API cache hits, key ages, rotations and notification results.
//
// Every collector is registered on an injected prometheus.Registerer; the
// package keeps no global state and never touches the default registry.
// No metric carries a secret: labels are routes, status codes, event kinds
// and IAM user names, never access key ids or secret keys.
package metrics

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are keyrot's collectors. Create them with New; every method is
// safe for concurrent use, and a nil *Metrics records nothing.
type Metrics struct {
	reg           prometheus.Registerer
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
	rotations     *prometheus.CounterVec
	notifications *prometheus.CounterVec

	// routes holds each route's resolved children, so the request path
	// does not hash label values on every observation.
	routes sync.Map // route -> *Route
}

// Route is one route pattern's request metrics with the children of its
// collectors resolved once: the request counter per status code and the
// duration histogram. Get it from Metrics.Route once per route and call
// Observe on every request; a nil *Route records nothing.
type Route struct {
	m        *Metrics
	route    string
	duration prometheus.Observer
	// codes[c-minCode] is the counter for status code c, created on
	// first use; other codes go through the CounterVec.
	codes [maxCode - minCode]atomic.Pointer[prometheus.Counter]
}

// The status codes a Route resolves without a lookup.
const (
	minCode = 100
	maxCode = 600
)

// New creates keyrot's collectors and registers them on reg. It fails if
// reg already holds collectors with the same names.
func New(reg prometheus.Registerer) (*Metrics, error) {
	if reg == nil {
		return nil, fmt.Errorf("metrics: nil registerer")
	}
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrot_http_requests_total",
			Help: "HTTP requests served by the keyrot API, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyrot_http_request_duration_seconds",
			Help:    "Time to serve a keyrot API request, by route pattern.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyrot_cache_hits_total",
			Help: "Credential reads served from the API cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyrot_cache_misses_total",
			Help: "Credential reads for a user the API cache holds no key for.",
		}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrot_rotations_total",
			Help: "Key events (created, deactivated, deleted, rotation_failed, warning), by event kind.",
		}, []string{"event"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrot_notifications_total",
			Help: "Notification deliveries, by event kind and result (ok or error).",
		}, []string{"kind", "result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.cacheHits, m.cacheMisses, m.rotations, m.notifications} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// ObserveRequest counts one HTTP request for a route pattern (never a raw
// path, so the label set stays bounded) with its status code and duration.
func (m *Metrics) ObserveRequest(route string, code int, d time.Duration) {
	m.Route(route).Observe(code, d)
}

// Route returns the request metrics of a route pattern (never a raw path),
// resolved once and shared by every caller; nil for a nil *Metrics.
func (m *Metrics) Route(route string) *Route {
	if m == nil {
		return nil
	}
	if r, ok := m.routes.Load(route); ok {
		return r.(*Route)
	}
	r, _ := m.routes.LoadOrStore(route, &Route{m: m, route: route, duration: m.duration.WithLabelValues(route)})
	return r.(*Route)
}

// Observe counts one request with its status code and duration.
func (r *Route) Observe(code int, d time.Duration) {
	if r == nil {
		return
	}
	r.counter(code).Inc()
	r.duration.Observe(d.Seconds())
}

func (r *Route) counter(code int) prometheus.Counter {
	if code < minCode || code >= maxCode {
		return r.m.requests.WithLabelValues(r.route, strconv.Itoa(code))
	}
	p := &r.codes[code-minCode]
	if c := p.Load(); c != nil {
		return *c
	}
	c := r.m.requests.WithLabelValues(r.route, strconv.Itoa(code))
	p.CompareAndSwap(nil, &c) // a racing caller stored the same child
	return *p.Load()
}

// CacheHit counts a credential read served from the cache.
func (m *Metrics) CacheHit() {
	if m != nil {
		m.cacheHits.Inc()
	}
}

// CacheMiss counts a credential read for a user the cache does not hold.
func (m *Metrics) CacheMiss() {
	if m != nil {
		m.cacheMisses.Inc()
	}
}

// ObserveEvent counts a key event by kind.
func (m *Metrics) ObserveEvent(e keyrot.Event) {
	if m != nil {
		m.rotations.WithLabelValues(string(e.Kind)).Inc()
	}
}

// ObserveNotification counts one notification delivery for an event kind:
// result "ok" when err is nil, "error" otherwise.
func (m *Metrics) ObserveNotification(kind keyrot.EventKind, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.notifications.WithLabelValues(string(kind), result).Inc()
}

// Notifier returns a keyrot.Notifier that counts every event it is given,
// to be put in a keyrot.MultiNotifier beside the real notifiers.
func (m *Metrics) Notifier() keyrot.Notifier {
	return keyrot.NotifierFunc(func(_ context.Context, e keyrot.Event) error {
		m.ObserveEvent(e)
		return nil
	})
}

// KeySource lists the current credentials whose ages are exported; the API
// cache implements it.
type KeySource interface {
	Current() []keyrot.Credentials
}

// WatchKeyAges registers keyrot_key_age_seconds{user}: the age of each
// user's current key, computed from src at scrape time with now.
func (m *Metrics) WatchKeyAges(src KeySource, now func() time.Time) error {
	if m == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	c := &keyAgeCollector{
		src: src,
		now: now,
		desc: prometheus.NewDesc("keyrot_key_age_seconds",
			"Age of each managed user's current access key.", []string{"user"}, nil),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register key ages: %w", err)
	}
	return nil
}

// StaleSource reports how stale the API cache is; the cache implements it.
type StaleSource interface {
	// Stale is the age of the oldest key served that the last refresh
	// could not confirm current (0 when all are confirmed).
	Stale() time.Duration
}

// WatchCacheStale registers keyrot_cache_stale_seconds: how long the API has
// been serving a last good key it could not confirm (a failed read of
// Secrets Manager), 0 when every key is confirmed, read from src at scrape
// time. It carries no label, so no user name.
func (m *Metrics) WatchCacheStale(src StaleSource) error {
	if m == nil {
		return nil
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyrot_cache_stale_seconds",
		Help: "Age of the oldest credentials the API serves that its last refresh could not confirm current (0: all confirmed).",
	}, func() float64 { return src.Stale().Seconds() })
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("metrics: register cache staleness: %w", err)
	}
	return nil
}

type keyAgeCollector struct {
	src  KeySource
	now  func() time.Time
	desc *prometheus.Desc
}

func (c *keyAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *keyAgeCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, cr := range c.src.Current() {
		age := now.Sub(cr.CreateDate).Seconds()
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, age, cr.UserName)
	}
}
