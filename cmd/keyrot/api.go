package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyrot/keyrot"
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
	stopRun  context.CancelFunc
	running  sync.WaitGroup // the cache refresh and the API-key reload
	// auditOut buffers the server's audit and access records, JSON lines
	// whatever log.format says (flushed every 100 ms and on stop), so a read
	// makes no write system call of its own.
	auditOut *app.BufferedWriter
}

// auditFlushEvery bounds how late an audit record reaches the log.
const auditFlushEvery = 100 * time.Millisecond

func (m *Main) newAPI(_ context.Context, cfg config.Config, log *slog.Logger, serve bool) (*apiRuntime, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mt, err := metrics.New(reg)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	a := &apiRuntime{cfg: cfg, log: log, serve: serve, registry: reg, metrics: mt, clock: m.clock()}
	a.auditOut = app.NewBufferedWriter(m.Stderr, auditFlushEvery)
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
	o.Observe = a.metrics.ObserveEvent
	o.NotifyResult = a.metrics.ObserveNotification
	return o
}

// apiKeys gathers the API keys: the config's, API_KEY's, and those kept in a
// Secrets Manager secret (read through store).
func apiKeys(ctx context.Context, cfg config.Config, store *secretsmanager.Store) ([]keyrothttp.APIKey, error) {
	var keys []keyrothttp.APIKey
	for _, k := range cfg.API.Keys {
		keys = append(keys, keyrothttp.APIKey{Name: k.Name, Hash: k.Hash, Users: k.Users, List: k.List})
	}
	if cfg.API.FullAccessKey != "" {
		keys = append(keys, keyrothttp.FullAccessKey("API_KEY", cfg.API.FullAccessKey))
	}
	if name := cfg.API.KeysSecret; name != "" {
		value, err := store.Value(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("api: read API keys: %w", err)
		}
		more, err := keyrothttp.ParseKeys(strings.NewReader(value))
		if err != nil {
			return nil, &config.Error{Field: "api.keys_secret", Value: name, Reason: err.Error()}
		}
		keys = append(keys, more...)
	}
	return keys, nil
}

// start loads the cache and opens the server (when serving).
func (a *apiRuntime) start(ctx context.Context, store *secretsmanager.Store) (map[string]string, error) {
	a.store = store
	addrs := map[string]string{}
	if !a.serve {
		return addrs, nil
	}
	keys, err := apiKeys(ctx, a.cfg, store)
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
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{
		Listen: a.cfg.API.Listen, TLSCert: a.cfg.API.TLSCert, TLSKey: a.cfg.API.TLSKey, Keys: keys,
		RateLimit: a.cfg.API.RateLimit, Burst: a.cfg.API.Burst, Registry: a.registry, Gatherer: a.registry,
	}, a.cache, keyrothttp.WithLogger(a.log), keyrothttp.WithMetrics(a.metrics), keyrothttp.WithRecordWriter(a.auditOut))
	if err != nil {
		return nil, &config.Error{Field: "api", Reason: err.Error()}
	}
	if err := srv.Open(); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	a.server = srv
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopRun = cancel
	// Promotions by other processes are found by polling the pointers:
	// api.refresh, at most a quarter of deactivate_after (APIPoll).
	poll, _ := a.cfg.APIPoll()
	a.running.Go(func() { _ = a.cache.Run(runCtx, poll) })
	if a.cfg.API.KeysSecret != "" {
		a.running.Go(func() { a.reloadKeys(runCtx) })
	}
	addrs["api"] = srv.URL()
	a.log.Info("api listening", "url", srv.URL(), "keys", len(keys), "poll", poll.String())
	return addrs, nil
}

// reloadKeys rereads the API keys kept in Secrets Manager every refresh, so
// API keys are rotated by editing that secret: add the new key, move the
// consumers, remove the old one. No restart.
func (a *apiRuntime) reloadKeys(ctx context.Context) {
	every := time.Duration(a.cfg.API.Refresh) // positive: config.Validate
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.clock.After(every):
		}
		keys, err := apiKeys(ctx, a.cfg, a.store)
		if err == nil {
			err = a.server.SetKeys(keys)
		}
		if err != nil {
			a.log.Error("reload API keys; keeping the current ones", "secret", a.cfg.API.KeysSecret, "error", err)
		}
	}
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
	if err := a.auditOut.Close(); err != nil {
		a.log.Error("flush audit log", "error", err)
	}
}

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := m.flags("serve")
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
	api, err := m.newAPI(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer api.stop(ctx)
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
	envOr := func(k, def string) string {
		if v, ok := m.LookupEnv(k); ok && v != "" {
			return v
		}
		return def
	}
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

func (m *Main) runAPIKey(_ context.Context, args []string) error {
	if len(args) != 2 || args[0] != "new" {
		return &usageError{"usage: keyrot apikey new NAME"}
	}
	name := args[1]
	key, hash, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "API key for %s (shown once; give it to the consumer, keep only the hash):\n  %s\n\nAdd to the config under api.keys:\n  - name: %s\n    hash: %s\n    users: [\"*\"]      # names or globs this key may read\n    list: false       # may it call GET /credentials\n",
		name, key, name, hash)
	return nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
