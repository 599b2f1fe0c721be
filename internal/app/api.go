package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/metrics"
	"github.com/keyrot/keyrot/ui"
)

// APIStore is what the API reads from Secrets Manager (secretsmanager.Store):
// the current-key pointers and the keys they name, for the cache, and the
// value of api.keys_secret.
type APIStore interface {
	keyrothttp.Source
	SecretValues
}

// APIOptions are what the caller supplies to an API beyond its config.
type APIOptions struct {
	Logger *slog.Logger
	// Clock drives the cache refresh, the API-key watcher, rate limits and
	// /ui; nil is the wall clock.
	Clock keyrot.Clock
	// Serve is false for an engine without the REST API (run --no-api):
	// the API then only counts the engine's events for the metrics.
	Serve bool
	// Listener is the server's listener, bound by the caller (keyrot dev);
	// nil listens on api.listen.
	Listener net.Listener
	// Lambda builds the API for a Lambda function URL: no listener, no
	// background goroutines (the environment is frozen between
	// invocations: Reload is called by requests), no /ui, and /metrics
	// serves an empty registry (a function URL is public, and each
	// environment would count only its own requests).
	Lambda bool
	// NoUI leaves /ui out (it views one account's engine: keyrot across
	// accounts serves the API without it).
	NoUI bool
	// ServerOptions are more options for the server (the accounts' caches:
	// keyrothttp.WithAccounts).
	ServerOptions []keyrothttp.ServerOption
	// loopDone, if set, is told when each background goroutine ends
	// (tests check that Close waited for them).
	loopDone func(name string)
}

// uiEventsPerUser is how many of the events this process emitted /ui keeps
// per user.
const uiEventsPerUser = 50

// uiMinRefresh bounds how often /ui pages reload themselves.
const uiMinRefresh = 10 * time.Second

// API is the REST API component: a cache of the current keys (which the
// engine publishes into, and which is refreshed from Secrets Manager every
// api.refresh), the API keys (reread from api.keys_secret through the
// secretsmanager adapter), the metrics, and the server in front of them.
// NewAPI builds it, Open starts serving and its goroutines, Close stops
// them and returns once every one has ended.
type API struct {
	cfg      config.Config
	opts     APIOptions
	log      *slog.Logger
	clock    keyrot.Clock
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	cache    *keyrothttp.Cache
	events   *fleet.EventLog

	store    APIStore
	server   *keyrothttp.Server
	notifier *apiKeyWarnings // nil tells nobody
	cancel   context.CancelFunc
	loops    sync.WaitGroup
}

// NewAPI builds the API's cache and metrics (registered once, here) for
// cfg. Its store is given to Open, so that the engine built in between can
// publish into the cache (EngineOptions).
func NewAPI(cfg config.Config, o APIOptions) (*API, error) {
	a := &API{cfg: cfg, opts: o, log: o.Logger, clock: o.Clock, registry: prometheus.NewRegistry()}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.clock == nil {
		a.clock = keyrot.SystemClock{}
	}
	if !o.Lambda {
		a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	mt, err := metrics.New(a.registry)
	if err != nil {
		return nil, fmt.Errorf("api: metrics: %w", err)
	}
	a.metrics = mt
	a.events = fleet.NewEventLog(uiEventsPerUser, a.clock.Now())
	a.cache = keyrothttp.NewCache(a, cfg.Policy(), keyrothttp.WithCacheLogger(a.log.With("system", "cache")), keyrothttp.WithCacheClock(a.clock))
	return a, nil
}

// errNoStore: the cache asked before Open gave it the store.
var errNoStore = errors.New("api: no secret store yet")

// Pointers lists every user's current-key pointer (the cache's source).
func (a *API) Pointers(ctx context.Context) ([]keyrot.KeyPointer, error) {
	if a.store == nil {
		return nil, errNoStore
	}
	return a.store.Pointers(ctx)
}

// ReadCurrent reads the keys the pointers name (the cache's source).
func (a *API) ReadCurrent(ctx context.Context, ptrs []keyrot.KeyPointer) ([]keyrot.Credentials, map[string]error) {
	if a.store == nil {
		failed := map[string]error{}
		for _, p := range ptrs {
			failed[p.UserName] = errNoStore
		}
		return nil, failed
	}
	return a.store.ReadCurrent(ctx, ptrs)
}

// EngineOptions adds the API's hooks to an engine's options: the engine
// publishes promoted keys into the cache (when serving), and its events
// and email outcomes are counted in the metrics and kept for /ui.
func (a *API) EngineOptions(o Options) Options {
	if a.opts.Serve {
		o.Publisher = a.cache
	}
	o.Observe = func(e keyrot.Event) {
		a.metrics.ObserveEvent(e)
		a.events.Add(e)
	}
	o.NotifyResult = a.metrics.ObserveNotification
	o.DeliveryResult = a.metrics.ObserveDelivery
	o.SyncResult = a.metrics.ObserveSync
	return o
}

// APIDeps are the parts Open wires the API to.
type APIDeps struct {
	// Store is where the keys and api.keys_secret are read.
	Store APIStore
	// Notifier is told about API keys close to expiry; nil tells nobody.
	Notifier keyrot.Notifier
	// Engine is the daemon's engine, which /ui observes and whose events it
	// shows; nil builds an engine that only observes (serve).
	Engine *App
}

// Open reads the API keys, loads the cache, and (unless Serve is false)
// starts the server and the goroutines that refresh the cache and reread
// the API keys. It returns the bound addresses ("api": the base URL).
// Bad settings are *config.Error.
func (a *API) Open(ctx context.Context, d APIDeps) (map[string]string, error) {
	a.store = d.Store
	if d.Notifier != nil {
		quiet := time.Duration(a.cfg.Notify.QuietPeriod)
		if quiet <= 0 {
			quiet = keyrot.DefaultQuietPeriod
		}
		a.notifier = &apiKeyWarnings{next: d.Notifier, quiet: quiet, clock: a.clock, sent: map[string]keyrot.WarnRecord{}}
	}
	addrs := map[string]string{}
	if !a.opts.Serve {
		return addrs, nil
	}
	keys, err := APIKeys(ctx, a.cfg, a.store)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		reason := "the API has no keys: set API_KEY, api.keys (keyrot apikey new NAME) or api.keys_secret (KEYROT_API_KEYS_SECRET)"
		if !a.opts.Lambda {
			reason += ", or run keyrot with --no-api"
		}
		return nil, &config.Error{Field: "api.keys", Reason: reason}
	}
	if err := a.cache.Load(ctx); err != nil {
		// The engine publishes as it promotes, and the refresh retries.
		a.log.Warn("initial credentials load failed; retrying in the background", "error", err)
	}
	srvCfg := keyrothttp.ServerConfig{
		Listen: a.cfg.API.Listen, Listener: a.opts.Listener, TLSCert: a.cfg.API.TLSCert, TLSKey: a.cfg.API.TLSKey, Keys: keys,
		RateLimit: a.cfg.API.RateLimit, Burst: a.cfg.API.Burst, Registry: a.registry, Gatherer: a.registry,
		MetricsPublic: a.cfg.API.MetricsPublic,
	}
	opts := []keyrothttp.ServerOption{keyrothttp.WithLogger(a.log), keyrothttp.WithMetrics(a.metrics), keyrothttp.WithClock(a.clock)}
	if a.opts.Lambda {
		srvCfg.Gatherer = prometheus.NewRegistry() // /metrics serves nothing: see APIOptions.Lambda
	} else if !a.opts.NoUI {
		mountUI, err := a.uiOption(ctx, d.Engine)
		if err != nil {
			return nil, err
		}
		opts = append(opts, mountUI)
	}
	srv, err := keyrothttp.NewServer(srvCfg, a.cache, append(opts, a.opts.ServerOptions...)...)
	if err != nil {
		return nil, &config.Error{Field: "api", Reason: err.Error()}
	}
	a.server = srv
	if a.opts.Lambda {
		return addrs, nil
	}
	if err := srv.Open(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &config.Error{Field: "api.listen", Value: a.cfg.API.Listen,
				Reason: "the address is in use by another process: choose another with api.listen or KEYROT_API_LISTEN (port 0 takes any free one)"}
		}
		return nil, fmt.Errorf("api: %w", err)
	}
	// The goroutines outlive Open's ctx (a request's); Close ends them.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	// Promotions by other processes are found by polling the pointers:
	// api.refresh, at most a quarter of deactivate_after (APIPoll).
	poll, _ := a.cfg.APIPoll()
	a.goLoop("cache refresh", func() { _ = a.cache.Run(runCtx, poll) })
	a.goLoop("api key watcher", func() { a.watchKeys(runCtx) })
	addrs["api"] = srv.URL()
	a.log.Info("api listening", "url", srv.URL(), "keys", len(keys), "poll", poll.String())
	return addrs, nil
}

// goLoop runs f in a goroutine that Close waits for.
func (a *API) goLoop(name string, f func()) {
	a.loops.Go(func() {
		if a.opts.loopDone != nil {
			defer a.opts.loopDone(name)
		}
		f()
	})
}

// Handler is the API's HTTP handler (the Lambda serves it per invocation);
// nil before Open.
func (a *API) Handler() http.Handler {
	if a.server == nil {
		return nil
	}
	return a.server.Handler()
}

// Metrics are the API's metrics (registered once, in NewAPI).
func (a *API) Metrics() *metrics.Metrics { return a.metrics }

// Serving reports whether the API serves requests (APIOptions.Serve).
func (a *API) Serving() bool { return a.opts.Serve }

// Cache is the API's credentials cache.
func (a *API) Cache() *keyrothttp.Cache { return a.cache }

// Close stops the goroutines and waits for them, drains the server (at
// most until ctx ends). The audit records go to the logger's writer, which
// its owner flushes.
func (a *API) Close(ctx context.Context) error {
	if a.cancel != nil {
		a.cancel()
	}
	a.loops.Wait()
	var errs []error
	if a.server != nil && !a.opts.Lambda {
		if err := a.server.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("api: shut down: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ReloadKeys rereads the API keys (api.keys_secret through the store) and
// gives them to the server. On an error the server keeps its keys.
func (a *API) ReloadKeys(ctx context.Context) error {
	if a.cfg.API.KeysSecret == "" || a.server == nil {
		return nil
	}
	keys, err := APIKeys(ctx, a.cfg, a.store)
	if err == nil {
		err = a.server.SetKeys(keys)
	}
	return err
}

// Reload reloads the cache and the API keys together (the Lambda, on the
// first request after api.refresh). A failed reload keeps what is there.
func (a *API) Reload(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.cache.Load(ctx); err != nil {
			a.log.Error("refresh failed; serving cached credentials", "system", "cache", "error", err)
		}
	})
	wg.Go(func() {
		if err := a.ReloadKeys(ctx); err != nil {
			a.log.Error("reload API keys; keeping the current ones", "secret", a.cfg.API.KeysSecret, "error", err)
		}
	})
	wg.Wait()
}

// watchKeys runs beside the API until ctx ends: at once and then every
// api.refresh it warns about the API keys close to expiry, and, with
// api.keys_secret, it then rereads the keys kept there, so a rotation
// (keyrot apikey rotate) or an edit of the secret takes effect without a
// restart.
func (a *API) watchKeys(ctx context.Context) {
	every := time.Duration(a.cfg.API.Refresh)
	for {
		if a.notifier != nil && a.cfg.API.KeyWarnBefore > 0 {
			a.notifier.begin()
			// ErrClosed: the daemon is stopping, its notifier first.
			if err := a.server.WarnExpiringKeys(ctx, a.notifier, time.Duration(a.cfg.API.KeyWarnBefore)); err != nil && !errors.Is(err, email.ErrClosed) {
				a.log.Error("warn about expiring API keys", "error", err)
			}
			a.notifier.end()
		}
		select {
		case <-ctx.Done():
			return
		case <-a.clock.After(every):
		}
		if err := a.ReloadKeys(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("reload API keys; keeping the current ones", "secret", a.cfg.API.KeysSecret, "error", err)
		}
	}
}

// uiOption mounts /ui on the server. It observes the fleet with the
// daemon's engine, whose events it also shows, or, for serve, with an
// engine built only to observe: serve then needs IAM's read permissions
// too, for /ui alone. A snapshot is reused for the API's poll interval, so
// viewers cost IAM calls at most that often.
func (a *API) uiOption(ctx context.Context, eng *App) (keyrothttp.ServerOption, error) {
	events := ui.EventSource(a.events)
	if eng == nil {
		var err error
		if eng, err = New(ctx, a.cfg, Options{Logger: a.log, Clock: a.clock, Notifier: NoNotify}); err != nil {
			return nil, fmt.Errorf("ui: %w", err)
		}
		events = nil // this process rotates nothing: it sees no events
	}
	poll, _ := a.cfg.APIPoll()
	return MountUI(ui.Config{
		Source: fleet.NewCached(Observer(eng, a.clock), poll, a.clock),
		Events: events, Clock: a.clock, Logger: a.log, Refresh: max(poll, uiMinRefresh),
	})
}

// apiKeyWarnings passes on the warnings about expiring API keys that are
// not repeats (keyrot.WarnRecord.Repeats: the same key in the same state,
// expiring or expired, within notify.quiet_period), and records the ones it
// passed on. The record is this process's: `serve` reads Secrets Manager
// and writes nothing, so a restart sends each such warning once more. It
// is used by the watcher goroutine alone.
type apiKeyWarnings struct {
	next  keyrot.Notifier
	quiet time.Duration
	clock keyrot.Clock
	sent  map[string]keyrot.WarnRecord // by API key name
	seen  map[string]bool              // in the current round
}

var _ keyrot.Notifier = (*apiKeyWarnings)(nil)

// begin starts a round of warnings: the keys not warned about in it are
// fine again, and forgotten by end.
func (w *apiKeyWarnings) begin() { w.seen = map[string]bool{} }

func (w *apiKeyWarnings) end() {
	for name := range w.sent {
		if !w.seen[name] {
			delete(w.sent, name)
		}
	}
}

// Notify passes e on unless it repeats a warning already sent.
func (w *apiKeyWarnings) Notify(ctx context.Context, e keyrot.Event) error {
	if e.Kind != keyrot.EventWarning || e.APIKey == "" {
		return w.next.Notify(ctx, e)
	}
	state := "expiring"
	if e.NextAt.IsZero() {
		state = "expired"
	}
	now := w.clock.Now()
	w.seen[e.APIKey] = true
	if w.sent[e.APIKey].Repeats(state, now, w.quiet) {
		return nil
	}
	if err := w.next.Notify(ctx, e); err != nil {
		return err // not recorded: the next round tries again
	}
	w.sent[e.APIKey] = keyrot.WarnRecord{KeyID: state, At: now}
	return nil
}
