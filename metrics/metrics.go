// Package metrics holds keyrot's Prometheus collectors: HTTP requests and
// latency, API cache hits, key ages, rotations and notification results.
//
// Every collector is registered on an injected prometheus.Registerer; the
// package keeps no global state and never touches the default registry.
// No metric carries a secret: labels are routes, status codes, event kinds,
// IAM user names and API key names, never access key ids, secret keys, API
// keys or their hashes. Series that name users or API keys carry LabelUser
// or LabelAPIKey, and Public leaves them out for unauthenticated scrapes.
package metrics

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/notify"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	deliveries    *prometheus.CounterVec
	syncs         *prometheus.CounterVec

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
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrot_webhook_deliveries_total",
			Help: "Event deliveries to webhooks, Slack and EventBridge, by target and result (ok, retried, failed, dropped); one count per attempt.",
		}, []string{"target", "result"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyrot_sync_deliveries_total",
			Help: "Deliveries of a new key to a sync target (GitHub, GitLab), by target id and result (ok or error).",
		}, []string{"target", "result"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.cacheHits, m.cacheMisses, m.rotations, m.notifications, m.deliveries, m.syncs} {
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

// ObserveDelivery counts one attempt to deliver an event to a target (a
// webhook, Slack, EventBridge): pass it to notify.WithResultHook.
func (m *Metrics) ObserveDelivery(target string, result notify.Result) {
	if m != nil {
		m.deliveries.WithLabelValues(target, string(result)).Inc()
	}
}

// ObserveSync counts one delivery of a new key to a sync target by its
// outcome.
func (m *Metrics) ObserveSync(target string, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.syncs.WithLabelValues(target, result).Inc()
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

// WatchKeyAges registers, computed from src at scrape time with now,
// keyrot_key_age_seconds{user}: the age of each user's current key;
// keyrot_rotation_overdue_seconds{user}: how long past its NextRotation a
// user's key still is (the engine stopped or failing: consumers are still
// served it, with an Expiration that moves forward); and
// keyrot_rotations_overdue: how many users are overdue, without names, for
// an alert any scrape can see.
func (m *Metrics) WatchKeyAges(src KeySource, now func() time.Time) error {
	if m == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	if err := m.registerGauges("keyrot_key_age_seconds", "Age of each managed user's current access key.", LabelUser, func(add func(string, float64)) {
		t := now()
		for _, cr := range src.Current() {
			add(cr.UserName, t.Sub(cr.CreateDate).Seconds())
		}
	}); err != nil {
		return err
	}
	if err := m.registerGauges("keyrot_rotation_overdue_seconds", "How long each managed user's rotation is past due (0: on time).", LabelUser, func(add func(string, float64)) {
		t := now()
		for _, cr := range src.Current() {
			add(cr.UserName, cr.Overdue(t).Seconds())
		}
	}); err != nil {
		return err
	}
	overdue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keyrot_rotations_overdue",
		Help: "How many managed users' rotations are past due (the engine is stopped or failing).",
	}, func() float64 {
		t, n := now(), 0
		for _, cr := range src.Current() {
			if cr.Overdue(t) > 0 {
				n++
			}
		}
		return float64(n)
	})
	if err := m.reg.Register(overdue); err != nil {
		return fmt.Errorf("metrics: register overdue rotations: %w", err)
	}
	return nil
}

// APIKeyExpiry is one API key's name and expiry (zero for none).
type APIKeyExpiry struct {
	Name    string
	Expires time.Time
}

// WatchAPIKeyExpiry registers keyrot_api_key_expiry_seconds{key}: the
// seconds until each API key expires, negative once it has, +Inf for a key
// without expiry (the seed's API_KEY); keys lists them at scrape time. The
// label is the key's name, never the key or its hash.
func (m *Metrics) WatchAPIKeyExpiry(keys func() []APIKeyExpiry, now func() time.Time) error {
	if now == nil {
		now = time.Now
	}
	return m.registerGauges("keyrot_api_key_expiry_seconds",
		"Seconds until each API key of the REST API expires (negative once expired; +Inf without expiry).", LabelAPIKey, func(add func(string, float64)) {
			t := now()
			for _, k := range keys() {
				left := math.Inf(1)
				if !k.Expires.IsZero() {
					left = k.Expires.Sub(t).Seconds()
				}
				add(k.Name, left)
			}
		})
}

// registerGauges registers a gauge with one label whose series collect
// lists at scrape time, calling add once per label value.
func (m *Metrics) registerGauges(name, help, label string, collect func(add func(value string, v float64))) error {
	if m == nil {
		return nil
	}
	c := &gaugeCollector{desc: prometheus.NewDesc(name, help, []string{label}, nil), collect: collect}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register %s: %w", name, err)
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

// gaugeCollector exports the series its collect function lists.
type gaugeCollector struct {
	desc    *prometheus.Desc
	collect func(add func(value string, v float64))
}

func (c *gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	c.collect(func(value string, v float64) {
		// The label names a user or an API key, never a secret: should a
		// name be one (pasted in the wrong place), it is redacted.
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, keyrot.RedactSecrets(value))
	})
}

// Label names that name a managed IAM user or an API key. A series carrying
// either tells who exists: the API serves it only to a scrape authenticated
// with an API key whose scope covers it (see Filter). Give any new per-user
// or per-key series one of these labels, so it is kept from strangers too.
const (
	LabelUser   = "user"
	LabelAPIKey = "key"
)

// Filter returns a Gatherer with g's series whose every label passes keep
// (called with the label's name and value); families left empty are
// dropped.
func Filter(g prometheus.Gatherer, keep func(label, value string) bool) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		families, err := g.Gather()
		out := families[:0]
		for _, f := range families {
			kept := f.Metric[:0]
			for _, m := range f.Metric {
				if keepsAll(m.GetLabel(), keep) {
					kept = append(kept, m)
				}
			}
			if len(kept) > 0 {
				f.Metric = kept
				out = append(out, f)
			}
		}
		return out, err
	})
}

func keepsAll(labels []*dto.LabelPair, keep func(label, value string) bool) bool {
	for _, l := range labels {
		if !keep(l.GetName(), l.GetValue()) {
			return false
		}
	}
	return true
}

// Public returns a Gatherer with g's series that name no user and no API
// key: what an unauthenticated scrape may see.
func Public(g prometheus.Gatherer) prometheus.Gatherer {
	return Filter(g, func(label, _ string) bool { return label != LabelUser && label != LabelAPIKey && label != LabelAccount })
}
