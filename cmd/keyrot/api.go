package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/credcache"
	"github.com/keyrot/keyrot/metrics"
	"github.com/keyrot/keyrot/secretsmanager"
)

// apiRuntime is the REST API beside the engine: a cache the rotator
// publishes into, refreshed from Secrets Manager in the background, and the
// server in front of it.
type apiRuntime struct {
	cfg      config.Config
	log      *slog.Logger
	serve    bool
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	cache    *keyrothttp.Cache
	server   *keyrothttp.Server
	store    *secretsmanager.Store
	clock    keyrot.Clock
	listener net.Listener // bound by the caller, or nil to listen on api.listen
	stopRun  context.CancelFunc
	running  sync.WaitGroup // the cache refresh and the API-key watcher
	// notifier is told about API keys close to expiry (the engine's, or
	// serve's own); nil sends nothing.
	notifier keyrot.Notifier
	// views is the engine /ui observes (the daemon's; nil: build one), and
	// events what it emitted, for /ui's user pages.
	views  *app.App
	events *fleet.EventLog
}

func (m *Main) newAPI(_ context.Context, cfg config.Config, log *slog.Logger, serve bool) (*apiRuntime, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mt, err := metrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	a := &apiRuntime{cfg: cfg, log: log, serve: serve, registry: reg, metrics: mt, clock: m.clock()}
	a.events = fleet.NewEventLog(uiEventsPerUser, a.clock.Now())
	a.cache = keyrothttp.NewCache(a, cfg.Policy(), keyrothttp.WithCacheLogger(log.With("system", "cache")), keyrothttp.WithCacheClock(a.clock))
	for _, w := range app.Warnings(cfg) {
		log.Warn("config warning", "warning", w)
	}
	return a, nil
}

// errNoStore: the cache asked before start gave it the store.
var errNoStore = errors.New("api: no secret store yet")

// Pointers lists every user's current-key pointer (the cache's source).
func (a *apiRuntime) Pointers(ctx context.Context) ([]keyrot.KeyPointer, error) {
	if a.store == nil {
		return nil, errNoStore
	}
	return a.store.Pointers(ctx)
}

// ReadCurrent reads the keys the pointers name (the cache's source).
func (a *apiRuntime) ReadCurrent(ctx context.Context, ptrs []keyrot.KeyPointer) ([]keyrot.Credentials, map[string]error) {
	if a.store == nil {
		failed := map[string]error{}
		for _, p := range ptrs {
			failed[p.UserName] = errNoStore
		}
		return nil, failed
	}
	return a.store.ReadCurrent(ctx, ptrs)
}

// appOptions are the hooks the engine reports to: the cache and the metrics.
func (a *apiRuntime) appOptions(o app.Options) app.Options {
	if a.serve {
		o.Publisher = a.cache
	}
	o.Observe = func(e keyrot.Event) {
		a.metrics.ObserveEvent(e)
		a.events.Add(e)
	}
	o.NotifyResult = a.metrics.ObserveNotification
	return o
}

// start loads the cache and opens the server (when serving).
func (a *apiRuntime) start(ctx context.Context, store *secretsmanager.Store) (map[string]string, error) {
	a.store = store
	addrs := map[string]string{}
	if !a.serve {
		return addrs, nil
	}
	keys, err := app.APIKeys(ctx, a.cfg, store)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, &config.Error{Field: "api.keys", Reason: "the API has no keys: set API_KEY, api.keys (keyrot apikey new NAME) or api.keys_secret, or run with --no-api"}
	}
	if err := a.cache.Load(ctx); err != nil {
		// The engine publishes as it promotes; keep serving and retry in the background.
		a.log.Warn("initial credentials load failed; retrying in the background", "error", err)
	}
	if err := a.metrics.WatchKeyAges(a.cache, a.clock.Now); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mountUI, err := a.uiOption(ctx)
	if err != nil {
		return nil, err
	}
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{
		Listen: a.cfg.API.Listen, Listener: a.listener, TLSCert: a.cfg.API.TLSCert, TLSKey: a.cfg.API.TLSKey, Keys: keys,
		RateLimit: a.cfg.API.RateLimit, Burst: a.cfg.API.Burst, Registry: a.registry, Gatherer: a.registry,
		MetricsPublic: a.cfg.API.MetricsPublic,
	}, a.cache, keyrothttp.WithLogger(a.log), keyrothttp.WithMetrics(a.metrics),
		keyrothttp.WithClock(a.clock), mountUI)
	if err != nil {
		return nil, &config.Error{Field: "api", Reason: err.Error()}
	}
	if err := srv.Open(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &config.Error{Field: "api.listen", Value: a.cfg.API.Listen,
				Reason: "the address is in use by another process: choose another with api.listen or KEYROT_API_LISTEN (port 0 takes any free one)"}
		}
		return nil, fmt.Errorf("api: %w", err)
	}
	a.server = srv
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopRun = cancel
	// Promotions by other processes are found by polling the pointers:
	// api.refresh, at most a quarter of deactivate_after (APIPoll).
	poll, _ := a.cfg.APIPoll()
	a.running.Go(func() { _ = a.cache.Run(runCtx, poll) })
	a.running.Go(func() { a.watchKeys(runCtx) })
	addrs["api"] = srv.URL()
	a.log.Info("api listening", "url", srv.URL(), "keys", len(keys), "poll", poll.String())
	return addrs, nil
}

// stop drains the server and stops the refresher.
func (a *apiRuntime) stop(ctx context.Context) {
	if a.stopRun != nil {
		a.stopRun()
		a.running.Wait()
	}
	if a.server != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := a.server.Close(cctx); err != nil {
			a.log.Error("api shutdown", "error", err)
		}
	}
}

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := m.flags("serve")
	m.logFormatFlag(fs)
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := m.loadConfig(*path)
	if err != nil {
		return err
	}
	log := m.logger(cfg)
	awsCfg, err := app.LoadAWS(ctx, cfg.Region)
	if err != nil {
		return err
	}
	// serve runs no engine, but emails the admin about expiring API keys.
	notifier, err := app.NewNotifier(ctx, cfg, awsCfg, log)
	if err != nil {
		return err
	}
	defer closeApp(ctx, notifier, log)
	api, err := m.newAPI(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer api.stop(ctx)
	api.notifier = notifier
	addrs, err := api.start(ctx, app.NewStore(awsCfg, cfg.Secrets.Prefix, cfg.Secrets.KMSKeyID))
	if err != nil {
		return err
	}
	if m.Ready != nil {
		m.Ready(addrs)
	}
	<-ctx.Done()
	log.Info("api stopping")
	return nil
}

func (m *Main) runCredentials(ctx context.Context, args []string) error {
	fs := m.flags("credentials")
	envOr := m.envOr
	apiURL := fs.String("api", envOr("KEYROT_API_URL", "http://localhost:8000"), "keyrot API base URL (env KEYROT_API_URL); the API key comes from KEYROT_API_KEY")
	format := fs.String("format", keyrothttp.FormatJSON, "json, env or credential_process")
	direct := fs.Bool("direct", false, "read Secrets Manager directly with your own AWS credentials instead of the API")
	prefix := fs.String("prefix", envOr("KEYROT_SECRET_PREFIX", "iam-key-rotation/"), "secret name prefix, with --direct")
	path := fs.String("config", "", "config file, with --direct: its secrets prefix and region (the timings come from the secret)")
	noCache := fs.Bool("no-cache", false, "with --format credential_process: always ask the API, never the cache file (under KEYROT_CACHE_DIR, else the user cache directory)")
	// Go's flag package stops at the first non-flag: accept USER before or after the flags.
	var user string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		user, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if user == "" && fs.NArg() == 1 {
		user = fs.Arg(0)
	} else if fs.NArg() != 0 || user == "" {
		return &usageError{"usage: keyrot credentials USER [--api URL] [--format json|env|credential_process] [--direct] [--no-cache]"}
	}
	switch *format {
	case keyrothttp.FormatJSON, keyrothttp.FormatEnv, keyrothttp.FormatCredentialProcess:
	default:
		return &usageError{fmt.Sprintf("--format %q: want json, env or credential_process", *format)}
	}
	var body []byte
	switch {
	case *direct:
		region := envOr("KEYROT_REGION", "")
		if *path != "" {
			cfg, err := m.loadConfig(*path)
			if err != nil {
				return err
			}
			if !flagSet(fs, "prefix") {
				*prefix = cfg.Secrets.Prefix
			}
			if cfg.Region != "" {
				region = cfg.Region
			}
		}
		awsCfg, err := app.LoadAWS(ctx, region)
		if err != nil {
			return err
		}
		creds, err := app.NewStore(awsCfg, *prefix, "").Current(ctx, user)
		if err != nil {
			return err
		}
		if body, err = keyrothttp.Render(creds.Annotate(m.clock().Now()), *format); err != nil {
			return err
		}
	default:
		key := envOr("KEYROT_API_KEY", "")
		if key == "" {
			return &usageError{"set KEYROT_API_KEY to your API key (or use --direct)"}
		}
		client := &keyrothttp.Client{BaseURL: *apiURL, APIKey: key}
		cache := credentialCache(envOr("KEYROT_CACHE_DIR", ""), m.clock().Now)
		var err error
		if *format != keyrothttp.FormatCredentialProcess || *noCache || cache == nil {
			if body, err = client.Credentials(ctx, user, *format); err != nil {
				return err
			}
			break
		}
		// An SDK runs credential_process often (botocore on every call
		// within 15 minutes of Expiration): answer from the cache until the
		// key's refresh time, and bridge a short API outage with it.
		res, err := cache.Get(ctx, credcache.Key{APIURL: *apiURL, User: user, APIKey: key}, func(ctx context.Context) (keyrot.Credentials, error) {
			return client.Get(ctx, user)
		})
		if err != nil {
			return err
		}
		if res.Source == credcache.FromCacheAPIDown {
			fmt.Fprintf(m.Stderr, "keyrot credentials: the API is unreachable (%v); serving the cached key %s, valid until %s\n",
				res.Unreachable, res.Creds.AccessKeyID, res.Creds.Expiration.UTC().Format(time.RFC3339))
		}
		if body, err = keyrothttp.Render(res.ForSDK(), *format); err != nil {
			return err
		}
	}
	if !bytes.HasSuffix(body, []byte("\n")) {
		body = append(body, '\n')
	}
	_, err := m.Stdout.Write(body)
	return err
}

// credentialCache is the credential_process cache in dir, else in the
// user's cache directory; nil when there is none (no home directory).
func credentialCache(dir string, now func() time.Time) *credcache.Cache {
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil
		}
		dir = filepath.Join(base, "keyrot")
	}
	return &credcache.Cache{Dir: dir, Now: now}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
