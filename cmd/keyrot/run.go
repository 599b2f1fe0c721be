package main

import (
	"context"
	"net"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

func (m *Main) runDaemon(ctx context.Context, args []string) error {
	fs := m.flags("run")
	m.logFormatFlag(fs)
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	noAPI := fs.Bool("no-api", false, "do not serve the REST API")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	needs := config.Everything
	if *noAPI {
		needs = []config.Need{config.NeedUsers, config.NeedMail, config.NeedDaemon}
	}
	cfg, err := m.loadConfig(*path, needs...)
	if err != nil {
		return err
	}
	return m.daemon(ctx, cfg, daemonOptions{NoAPI: *noAPI})
}

// daemonOptions are what a command sets up for the daemon beyond its config.
type daemonOptions struct {
	AWS         *aws.Config  // instead of the SDK's default chain (keyrot dev)
	NoAPI       bool         // run the engine alone
	APIListener net.Listener // the API's listener, bound by the caller (keyrot dev)
	// Ready is called once the API serves, with its bound addresses.
	Ready func(addrs map[string]string)
}

// daemon runs the scheduler (and the API) until ctx ends, then stops
// cleanly: the step in flight finishes, the API drains, notifications flush.
func (m *Main) daemon(ctx context.Context, cfg config.Config, o daemonOptions) error {
	if cfg.Accounts.Enabled() {
		return m.daemonAccounts(ctx, cfg, o)
	}
	log := m.logger(cfg)
	api, err := m.newAPI(cfg, log, app.APIOptions{Serve: !o.NoAPI, Listener: o.APIListener})
	if err != nil {
		return err
	}
	defer closeApp(ctx, api, log)
	a, err := app.New(ctx, cfg, api.EngineOptions(app.Options{Logger: log, AWS: o.AWS, Clock: m.clock(), LookupEnv: m.LookupEnv}))
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	if err := m.openAPI(ctx, api, app.APIDeps{Store: a.Store, Notifier: a.Notifier, Engine: a}, o); err != nil {
		return err
	}
	sched := &keyrot.Scheduler{Rotator: a.Rotator, Logger: log, Resync: time.Duration(cfg.Rotation.Resync)}
	log.Info("keyrot running", "users", len(cfg.Users.Names), "user_tag", cfg.Users.Tag,
		"rotate_every", keyrot.FormatDuration(time.Duration(cfg.Rotation.RotateEvery)), "dry_run", cfg.Rotation.DryRun)
	return sched.Run(ctx)
}
