package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/credcache"
)

// newAPI builds the API component on the command's clock and logger, with
// its audit records in its log, and logs the config's warnings.
func (m *Main) newAPI(cfg config.Config, log *slog.Logger, o app.APIOptions) (*app.API, error) {
	o.Logger, o.Clock = log, m.clock()
	api, err := app.NewAPI(cfg, o)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "warning", w)
	}
	return api, nil
}

func (m *Main) runServe(ctx context.Context, args []string) error {
	fs := m.flags("serve")
	m.logFormatFlag(fs)
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	// The API alone: no user selection. Without mail settings, the
	// warnings about expiring API keys go to the log.
	cfg, err := m.loadConfig(*path, config.NeedAPI)
	if err != nil {
		return err
	}
	log := m.logger(cfg)
	if err := cfg.Validate(config.NeedMail); err != nil && cfg.Notify.Via != "log" {
		log.Warn("no mail settings: API key expiry warnings are logged, not emailed", "reason", err.Error())
		cfg.Notify.Via = "log"
	}
	if cfg.Accounts.Enabled() {
		return m.serveAccounts(ctx, cfg, daemonOptions{}, false)
	}
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
	api, err := m.newAPI(cfg, log, app.APIOptions{Serve: true})
	if err != nil {
		return err
	}
	defer closeApp(ctx, api, log)
	addrs, err := api.Open(ctx, app.APIDeps{Store: app.NewStore(awsCfg, cfg.Secrets.Prefix, cfg.Secrets.KMSKeyID), Notifier: notifier})
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
	prefix := fs.String("prefix", "", "secret name prefix, with --direct (default: the config's secrets.prefix, iam-key-rotation/)")
	path := fs.String("config", "", "config file, with --direct: its secrets prefix and region (the timings come from the secret)")
	noCache := fs.Bool("no-cache", false, "with --format credential_process: always ask the API, never the cache file (under KEYROT_CACHE_DIR, else the user cache directory)")
	// Go's flag package stops at the first non-flag: accept USER before or after the flags.
	var user string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		user, args = args[0], args[1:]
	}
	if err := m.parseWithArgs(fs, args); err != nil {
		return err
	}
	if user == "" && fs.NArg() == 1 {
		user = fs.Arg(0)
	} else if fs.NArg() != 0 || user == "" {
		return &usageError{"want one USER: keyrot credentials USER [flags]"}
	}
	switch *format {
	case keyrothttp.FormatJSON, keyrothttp.FormatEnv, keyrothttp.FormatCredentialProcess:
	default:
		return &usageError{fmt.Sprintf("--format %q: want json, env or credential_process", *format)}
	}
	var body []byte
	switch {
	case *direct:
		// The reader needs only the prefix and the region: from the file
		// (if any) and the environment (KEYROT_SECRETS_PREFIX, KEYROT_REGION).
		cfg, err := m.loadConfig(*path)
		if err != nil {
			return err
		}
		if !flagSet(fs, "prefix") {
			*prefix = cfg.Secrets.Prefix
		}
		awsCfg, err := app.LoadAWS(ctx, cfg.Region)
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
