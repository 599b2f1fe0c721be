package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/sandbox"
)

func (m *Main) runDaemon(ctx context.Context, args []string) error {
	fs := m.flags("run")
	path := fs.String("config", "", "config file (YAML); KEYROT_* env overrides it")
	noAPI := fs.Bool("no-api", false, "do not serve the REST API")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := m.loadConfig(*path)
	if err != nil {
		return err
	}
	return m.daemon(ctx, cfg, nil, !*noAPI, nil)
}

// daemon runs the scheduler (and the API) until ctx ends, then stops
// cleanly: the step in flight finishes, the API drains, notifications flush.
func (m *Main) daemon(ctx context.Context, cfg config.Config, awsCfg *aws.Config, serveAPI bool, ready func(addrs map[string]string)) error {
	if cfg.Rotation.DryRun {
		return &config.Error{Field: "rotation.dry_run", Reason: "the daemon does not run dry: use `keyrot rotate --dry-run` or `keyrot status` to see the plan"}
	}
	log := m.logger(cfg)
	api, err := m.newAPI(ctx, cfg, log, serveAPI)
	if err != nil {
		return err
	}
	defer api.stop(ctx)
	a, err := app.New(ctx, cfg, api.appOptions(app.Options{Logger: log, AWS: awsCfg, Clock: m.clock()}))
	if err != nil {
		return err
	}
	defer closeApp(ctx, a, log)
	api.notifier = a.Notifier
	api.views = a
	addrs, err := api.start(ctx, a.Store)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(addrs)
	}
	if m.Ready != nil {
		m.Ready(addrs)
	}
	sched := &keyrot.Scheduler{Rotator: a.Rotator, Logger: log, Resync: time.Duration(cfg.Rotation.Resync)}
	log.Info("keyrot running", "users", len(cfg.Users.Names), "user_tag", cfg.Users.Tag,
		"rotate_every", keyrot.FormatDuration(time.Duration(cfg.Rotation.RotateEvery)), "dry_run", cfg.Rotation.DryRun)
	return sched.Run(ctx)
}

// Dev timings: a whole cycle (create, deactivate, delete, next create) in under a minute.
const (
	devRotateEvery     = 40 * time.Second
	devDeactivateAfter = 15 * time.Second
	devDeleteAfter     = 10 * time.Second
)

func (m *Main) runDev(ctx context.Context, args []string) error {
	fs := m.flags("dev")
	f := m.addSandboxFlags(fs, 2*time.Second)
	rotateEvery := fs.Duration("rotate-every", devRotateEvery, "rotate each key this often")
	deactivateAfter := fs.Duration("deactivate-after", devDeactivateAfter, "deactivate the previous key this long after its successor")
	deleteAfter := fs.Duration("delete-after", devDeleteAfter, "delete an inactive key this long after")
	apiListen := fs.String("api-listen", "127.0.0.1:8000", "REST API address")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Users.Names = []string{"ci-bot", "deploy-bot"}
	cfg.Rotation.RotateEvery = config.Duration(*rotateEvery)
	cfg.Rotation.DeactivateAfter = config.Duration(*deactivateAfter)
	cfg.Rotation.DeleteAfter = config.Duration(*deleteAfter)
	cfg.Rotation.OrphanGrace = config.Duration(20 * time.Second)
	cfg.Rotation.VerifyTimeout = config.Duration(30 * time.Second)
	cfg.Rotation.Resync = config.Duration(10 * time.Second)
	cfg.Notify = config.Notify{Via: "ses", Sender: "keyrot@example.com", Admin: "security@example.com", APIURL: "http://" + *apiListen,
		// Under the sandbox SES account's rate of 1 a second.
		QuietPeriod: config.Duration(time.Hour), SendRate: 0.9, SMTP: config.SMTP{TLS: "none"}}
	cfg.API.Listen = *apiListen
	cfg.API.Refresh = config.Duration(max(time.Second, *deactivateAfter/4)) // the most api.refresh may be
	cfg.Log.Format = "text"
	if err := cfg.Validate(); err != nil {
		return err
	}

	sb, err := sandbox.New(f.options(slog.New(slog.DiscardHandler)))
	if err != nil {
		return &usageError{err.Error()}
	}
	if err := sb.Start(ctx, f.listen); err != nil {
		return fmt.Errorf("dev: sandbox: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = sb.Close(cctx)
	}()
	awsCfg := aws.Config{
		Region:       f.region,
		Credentials:  credentials.NewStaticCredentialsProvider(f.keyID, f.secret, ""),
		BaseEndpoint: aws.String(sb.URL()),
	}
	if err := seedDevUsers(ctx, awsCfg); err != nil {
		return fmt.Errorf("dev: seed users: %w", err)
	}
	apiKey, _, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		return err
	}
	cfg.API.FullAccessKey = apiKey
	return m.daemon(ctx, cfg, &awsCfg, true, func(addrs map[string]string) {
		api := addrs["api"]
		fmt.Fprintf(m.Stdout, `keyrot dev: the whole flow on a built-in sandbox (a test double for AWS; no real keys).
  users ci-bot (with an old key keyrot did not create: adopted and rotated out) and deploy-bot
  rotate every %s, deactivate the previous key after %s, delete it %s later
  sandbox AWS endpoint: %s   (AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s)
  emails sent (SES outbox): %s/_sandbox/ses/outbox   (a page per mail in a browser, JSON to curl)
  status page: %s/ui   (log in with the API key below)

The REST API, with this run's API key:
  export KEYROT_API_KEY=%s
  curl -H "X-API-Key: $KEYROT_API_KEY" %s/credentials/ci-bot
  go run ./cmd/keyrot credentials ci-bot --api %s --format credential_process
  curl -H "Authorization: Bearer $KEYROT_API_KEY" %s/metrics   # without a key: no user names

Straight from Secrets Manager (it follows the ring of secrets to the current key):
  AWS_ENDPOINT_URL=%s AWS_REGION=%s AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s go run ./cmd/keyrot credentials ci-bot --direct

Watch the log below for every key event; Ctrl-C stops.
`, keyrot.FormatDuration(*rotateEvery), keyrot.FormatDuration(*deactivateAfter), keyrot.FormatDuration(*deleteAfter),
			sb.URL(), f.keyID, f.secret, sb.URL(), api, apiKey, api, api, api, sb.URL(), f.region, f.keyID, f.secret)
		addrs["sandbox"] = sb.URL()
	})
}

// seedDevUsers creates the demo users in the sandbox: ci-bot with an owner
// and an old key of its own, deploy-bot with none.
func seedDevUsers(ctx context.Context, cfg aws.Config) error {
	client := awsiam.NewFromConfig(cfg)
	users := []struct {
		name, owner string
		oldKey      bool
	}{{"ci-bot", "ci-team@example.com", true}, {"deploy-bot", "", false}}
	for _, u := range users {
		in := &awsiam.CreateUserInput{UserName: aws.String(u.name)}
		if u.owner != "" {
			in.Tags = []iamtypes.Tag{{Key: aws.String("keyrot:owner"), Value: aws.String(u.owner)}}
		}
		_, err := client.CreateUser(ctx, in)
		var exists *iamtypes.EntityAlreadyExistsException
		if errors.As(err, &exists) {
			continue // kept from an earlier run with --data
		}
		if err != nil {
			return fmt.Errorf("create user %q: %w", u.name, err)
		}
		if u.oldKey {
			if _, err := client.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String(u.name)}); err != nil {
				return fmt.Errorf("create key for %q: %w", u.name, err)
			}
		}
	}
	return nil
}
