package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
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
	stopRun  context.CancelFunc
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
	a := &apiRuntime{cfg: cfg, log: log, serve: serve, registry: reg, metrics: mt}
	a.auditOut = app.NewBufferedWriter(m.Stderr, auditFlushEvery)
	a.cache = keyrothttp.NewCache(a, cfg.Policy(), keyrothttp.WithCacheLogger(log.With("system", "cache")))
	return a, nil
}

// ListCurrent reads every current key from Secrets Manager (the cache's source).
func (a *apiRuntime) ListCurrent(ctx context.Context) ([]keyrot.Credentials, error) {
	if a.store == nil {
		return nil, errors.New("api: no secret store yet")
	}
	return a.store.ListCurrent(ctx)
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

// start loads the cache and opens the server (when serving).
func (a *apiRuntime) start(ctx context.Context, store *secretsmanager.Store, awsCfg aws.Config) (map[string]string, error) {
	a.store = store
	addrs := map[string]string{}
	if !a.serve {
		return addrs, nil
	}
	keys, err := app.APIKeys(ctx, a.cfg, awssm.NewFromConfig(awsCfg))
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
	if err := a.metrics.WatchKeyAges(a.cache, time.Now); err != nil {
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
	go func() { _ = a.cache.Run(runCtx, time.Duration(a.cfg.API.Refresh)) }()
	if a.cfg.API.KeysSecret != "" {
		go a.reloadKeys(runCtx, awsCfg)
	}
	addrs["api"] = srv.URL()
	a.log.Info("api listening", "url", srv.URL(), "keys", len(keys))
	return addrs, nil
}

// reloadKeys rereads the API keys kept in Secrets Manager every refresh, so
// API keys are rotated by editing that secret: add the new key, move the
// consumers, remove the old one. No restart.
func (a *apiRuntime) reloadKeys(ctx context.Context, awsCfg aws.Config) {
	every := time.Duration(a.cfg.API.Refresh)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		keys, err := app.APIKeys(ctx, a.cfg, awssm.NewFromConfig(awsCfg))
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
	addrs, err := api.start(ctx, app.NewStore(awsCfg, cfg.Secrets.Prefix, cfg.Secrets.KMSKeyID), awsCfg)
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
	path := fs.String("config", "", "config file for the rotation timings, with --direct (they set Expiration)")
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
		return &usageError{"usage: keyrot credentials USER [--api URL] [--format json|env|credential_process] [--direct]"}
	}
	switch *format {
	case keyrothttp.FormatJSON, keyrothttp.FormatEnv, keyrothttp.FormatCredentialProcess:
	default:
		return &usageError{fmt.Sprintf("--format %q: want json, env or credential_process", *format)}
	}
	var body []byte
	if *direct {
		policy := keyrot.DefaultPolicy()
		if *path != "" {
			cfg, err := m.loadConfig(*path)
			if err != nil {
				return err
			}
			policy = cfg.Policy()
		}
		awsCfg, err := app.LoadAWS(ctx, envOr("KEYROT_REGION", ""))
		if err != nil {
			return err
		}
		creds, err := app.NewStore(awsCfg, *prefix, "").Current(ctx, user)
		if err != nil {
			return err
		}
		if body, err = keyrothttp.Render(policy.Annotate(creds), *format); err != nil {
			return err
		}
	} else {
		key := envOr("KEYROT_API_KEY", "")
		if key == "" {
			return &usageError{"set KEYROT_API_KEY to your API key (or use --direct)"}
		}
		client := &keyrothttp.Client{BaseURL: *apiURL, APIKey: key}
		var err error
		if body, err = client.Credentials(ctx, user, *format); err != nil {
			return err
		}
	}
	if !bytes.HasSuffix(body, []byte("\n")) {
		body = append(body, '\n')
	}
	_, err := m.Stdout.Write(body)
	return err
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
