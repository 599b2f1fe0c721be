package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"go.yaml.in/yaml/v3"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/atomicfile"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/sandbox"
)

// Dev timings: a whole cycle (create, deactivate, delete, next create) in under a minute.
const (
	devRotateEvery     = 40 * time.Second
	devDeactivateAfter = 15 * time.Second
	devDeleteAfter     = 10 * time.Second
)

// maxDevUsers bounds --users: a fleet to look at, not a load test.
const maxDevUsers = 500

// The files keyrot dev writes for the commands run beside it.
const (
	devConfigFile = "keyrot.yaml"
	devEnvFile    = "env"
)

func (m *Main) runDev(ctx context.Context, args []string) error {
	fs := m.flags("dev")
	f := m.addSandboxFlags(fs, 2*time.Second)
	rotateEvery := fs.Duration("rotate-every", devRotateEvery, "rotate each key this often")
	deactivateAfter := fs.Duration("deactivate-after", devDeactivateAfter, "deactivate the previous key this long after its successor")
	deleteAfter := fs.Duration("delete-after", devDeleteAfter, "delete an inactive key this long after")
	apiListen := fs.String("api-listen", m.envOr("KEYROT_API_LISTEN", "127.0.0.1:8000"), "REST API address; port 0 takes any free one (env KEYROT_API_LISTEN)")
	dir := fs.String("dir", "", "where to write "+devConfigFile+" and "+devEnvFile+" for the commands you run beside dev (default: a temporary directory, removed when dev stops)")
	nUsers := fs.Int("users", 2, fmt.Sprintf("how many IAM users to seed, 1 to %d: ci-bot, deploy-bot, then svc-NN (some with keys keyrot did not create)", maxDevUsers))
	logFormat := fs.String("log-format", "console", "console (a short line per key event, on stdout), text or json (every record, on stderr)")
	if err := m.parse(fs, args); err != nil {
		return err
	}
	if *nUsers < 1 || *nUsers > maxDevUsers {
		return &usageError{fmt.Sprintf("--users must be 1 to %d, not %d", maxDevUsers, *nUsers)}
	}
	switch *logFormat {
	case "console", "text", "json":
	default:
		return &usageError{fmt.Sprintf("--log-format must be console, text or json, not %q", *logFormat)}
	}
	users := devUsers(*nUsers)

	sb, err := sandbox.New(f.options(slog.New(slog.DiscardHandler)))
	if err != nil {
		return &usageError{err.Error()}
	}
	if err := sb.Start(ctx, f.listen); err != nil {
		return listenError(err, f.listen, "--listen")
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = sb.Close(cctx)
	}()
	// The API's listener is bound here, so that a busy port is reported
	// with the flag that moves it and a port 0 is known for the emails.
	ln, err := net.Listen("tcp", *apiListen)
	if err != nil {
		return listenError(err, *apiListen, "--api-listen")
	}
	defer ln.Close() // the server closes it too; a second close is harmless
	apiURL := keyrothttp.BaseURL(ln.Addr(), false)

	apiKey, apiKeyHash, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		return err
	}
	cfg := devConfig(users, devTimings{*rotateEvery, *deactivateAfter, *deleteAfter})
	cfg.Region = f.region
	cfg.Notify.APIURL = apiURL
	cfg.API.Listen = ln.Addr().String()
	cfg.API.Keys = []config.APIKey{{Name: "dev", Hash: apiKeyHash, Users: []string{"*"}, List: true}}
	cfg.Log.Format = *logFormat
	if err := cfg.Validate(config.Everything...); err != nil {
		return err
	}

	awsCfg := aws.Config{
		Region:       f.region,
		Credentials:  credentials.NewStaticCredentialsProvider(f.keyID, f.secret, ""),
		BaseEndpoint: aws.String(sb.URL()),
	}
	if err := seedDevUsers(ctx, awsCfg, users); err != nil {
		return fmt.Errorf("dev: seed users: %w", err)
	}

	files, cleanup, err := writeDevFiles(*dir, cfg, devEnv{
		Endpoint: sb.URL(), Region: f.region, AccessKeyID: f.keyID, SecretAccessKey: f.secret, APIURL: apiURL, APIKey: apiKey,
	})
	if err != nil {
		return err
	}
	defer cleanup()

	return m.daemon(ctx, cfg, daemonOptions{AWS: &awsCfg, APIListener: ln, Ready: func(addrs map[string]string) {
		addrs["sandbox"] = sb.URL()
		printDevBanner(m.Stdout, devBanner{
			Users: users, Timings: devTimings{*rotateEvery, *deactivateAfter, *deleteAfter},
			Sandbox: sb.URL(), AccessKeyID: f.keyID, API: addrs["api"], Files: files, Installed: keyrotOnPath(),
		})
	}})
}

// devTimings are the rotation timings dev runs with.
type devTimings struct{ rotateEvery, deactivateAfter, deleteAfter time.Duration }

// devConfig is dev's effective configuration, short of the addresses that
// are known once it listens.
func devConfig(users []devUser, t devTimings) config.Config {
	cfg := config.Default()
	for _, u := range users {
		cfg.Users.Names = append(cfg.Users.Names, u.Name)
	}
	cfg.Rotation.RotateEvery = config.Duration(t.rotateEvery)
	cfg.Rotation.DeactivateAfter = config.Duration(t.deactivateAfter)
	cfg.Rotation.DeleteAfter = config.Duration(t.deleteAfter)
	cfg.Rotation.OrphanGrace = config.Duration(20 * time.Second)
	cfg.Rotation.VerifyTimeout = config.Duration(30 * time.Second)
	cfg.Rotation.Resync = config.Duration(10 * time.Second)
	// The sandbox does not throttle, and each new key waits out the
	// propagation delay: a fleet's first round fits well within a cycle.
	cfg.Rotation.IAMRate = max(cfg.Rotation.IAMRate, float64(4*len(users)))
	cfg.Rotation.Concurrency = max(cfg.Rotation.Concurrency, min(64, len(users)/4))
	cfg.Notify = config.Notify{Via: "ses", Sender: "keyrot@example.com", Admin: "security@example.com",
		// Under the sandbox SES account's rate of 1 a second.
		QuietPeriod: config.Duration(time.Hour), SendRate: 0.9, SMTP: config.SMTP{TLS: "none"}}
	if len(users) > 2 {
		// A fleet's events would outrun that rate: one email per recipient per cycle.
		cfg.Notify.Digest = config.Duration(t.rotateEvery)
	}
	cfg.API.Refresh = config.Duration(max(time.Second, t.deactivateAfter/4)) // the most api.refresh may be
	return cfg
}

// devUser is an IAM user dev seeds in its sandbox.
type devUser struct {
	Name, Owner string
	OldKeys     int // keys keyrot did not create
}

// devUsers are the n users dev seeds: ci-bot with an owner and an old key
// of its own, deploy-bot with none, then svc-NN users with owners spread
// over three teams, every third with an old key and every fifth with two
// (adopted and rotated out, the older first).
func devUsers(n int) []devUser {
	users := []devUser{{Name: "ci-bot", Owner: "ci-team@example.com", OldKeys: 1}, {Name: "deploy-bot"}}
	if n <= len(users) {
		return users[:n]
	}
	width := len(strconv.Itoa(n))
	for i := 3; i <= n; i++ {
		u := devUser{Name: fmt.Sprintf("svc-%0*d", width, i), Owner: fmt.Sprintf("team-%c@example.com", 'a'+i%3)}
		switch {
		case i%5 == 0:
			u.OldKeys = 2
		case i%3 == 0:
			u.OldKeys = 1
		}
		users = append(users, u)
	}
	return users
}

// seedDevUsers creates users in the sandbox, with their owner tags and old
// keys. Users kept from an earlier run (--data) are left as they are.
func seedDevUsers(ctx context.Context, cfg aws.Config, users []devUser) error {
	client := awsiam.NewFromConfig(cfg)
	for _, u := range users {
		in := &awsiam.CreateUserInput{UserName: aws.String(u.Name)}
		if u.Owner != "" {
			in.Tags = []iamtypes.Tag{{Key: aws.String("keyrot:owner"), Value: aws.String(u.Owner)}}
		}
		_, err := client.CreateUser(ctx, in)
		var exists *iamtypes.EntityAlreadyExistsException
		if errors.As(err, &exists) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create user %q: %w", u.Name, err)
		}
		for range u.OldKeys {
			if _, err := client.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String(u.Name)}); err != nil {
				return fmt.Errorf("create key for %q: %w", u.Name, err)
			}
		}
	}
	return nil
}

// devEnv is what a shell beside dev needs to reach it: the sandbox as the
// AWS endpoint, its admin key, and the API with this run's API key.
type devEnv struct {
	Endpoint, Region, AccessKeyID, SecretAccessKey, APIURL, APIKey string
}

// devFiles are the paths dev wrote.
type devFiles struct {
	Dir, Config, Env string
	Temporary        bool // removed when dev stops
}

// writeDevFiles writes dev's effective config and the env lines to source
// beside it into dir (a new temporary directory when dir is empty). The
// config has no endpoint or credentials: the AWS SDK takes those from the
// environment (AWS_ENDPOINT_URL, ...), as it does against real AWS, and
// the env file sets them. Both are 0600: the env file holds the API key.
func writeDevFiles(dir string, cfg config.Config, env devEnv) (devFiles, func(), error) {
	files := devFiles{Dir: dir}
	cleanup := func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "keyrot-dev-")
		if err != nil {
			return files, cleanup, fmt.Errorf("dev: %w", err)
		}
		files.Dir, files.Temporary = tmp, true
		cleanup = func() { os.RemoveAll(tmp) }
	}
	abs, err := filepath.Abs(files.Dir)
	if err != nil {
		return files, cleanup, fmt.Errorf("dev: --dir: %w", err)
	}
	files.Dir, files.Config, files.Env = abs, filepath.Join(abs, devConfigFile), filepath.Join(abs, devEnvFile)

	cfg.Log.Format = "" // each command picks its own: text on a terminal, else JSON
	out, err := yaml.Marshal(cfg.Redacted())
	if err != nil {
		return files, cleanup, fmt.Errorf("dev: write config: %w", err)
	}
	header := fmt.Sprintf("# keyrot dev's effective configuration (pid %d). The AWS endpoint and\n"+
		"# credentials come from the environment: . %s\n", os.Getpid(), files.Env)
	if err := atomicfile.Write(abs, devConfigFile, append([]byte(header), out...)); err != nil {
		return files, cleanup, fmt.Errorf("dev: --dir: %w", err)
	}
	lines := fmt.Sprintf("# keyrot dev (pid %d): its sandbox as the AWS endpoint, and its API. In a shell: . %s\n", os.Getpid(), files.Env) +
		"export AWS_ENDPOINT_URL=" + shellQuote(env.Endpoint) + "\n" +
		"export AWS_REGION=" + shellQuote(env.Region) + " AWS_DEFAULT_REGION=" + shellQuote(env.Region) + "\n" +
		"export AWS_ACCESS_KEY_ID=" + shellQuote(env.AccessKeyID) + " AWS_SECRET_ACCESS_KEY=" + shellQuote(env.SecretAccessKey) + "\n" +
		"export KEYROT_API_URL=" + shellQuote(env.APIURL) + " KEYROT_API_KEY=" + shellQuote(env.APIKey) + "\n"
	if err := atomicfile.Write(abs, devEnvFile, []byte(lines)); err != nil {
		return files, cleanup, fmt.Errorf("dev: --dir: %w", err)
	}
	return files, cleanup, nil
}

var shellSafe = regexp.MustCompile(`^[\w@%+=:,./-]+$`)

// shellQuote quotes s for a POSIX shell, when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// keyrotOnPath reports whether a shell finds keyrot (the next steps and
// the credential_process profile run it).
func keyrotOnPath() bool {
	_, err := exec.LookPath("keyrot")
	return err == nil
}

// devBanner is what dev prints once it serves.
type devBanner struct {
	Users                     []devUser
	Timings                   devTimings
	Sandbox, AccessKeyID, API string
	Files                     devFiles
	Installed                 bool
}

// links are the pages to open in a browser: name, URL, what it is.
func (b devBanner) links() [][3]string {
	return [][3]string{
		{"status page", b.API + "/ui", "every user's keys and what happens next (log in with the API key)"},
		{"emails", b.Sandbox + "/_sandbox/ses/outbox", "the emails sent: a page per mail in a browser, JSON to curl"},
		{"metrics", b.API + "/metrics", "Prometheus (per-user series with the API key as a Bearer token)"},
	}
}

func (b devBanner) usersLine() string {
	var unmanaged int
	for _, u := range b.Users {
		if u.OldKeys > 0 {
			unmanaged++
		}
	}
	if len(b.Users) <= 2 {
		names := make([]string, len(b.Users))
		for i, u := range b.Users {
			names[i] = u.Name
			if u.OldKeys > 0 {
				names[i] += " (with an old key keyrot did not create: adopted, then rotated out)"
			}
		}
		return strings.Join(names, " and ")
	}
	last := b.Users[len(b.Users)-1].Name
	return fmt.Sprintf("%d: ci-bot, deploy-bot, svc-%s to %s; %d with keys keyrot did not create (adopted, then rotated out)",
		len(b.Users), strings.TrimPrefix(b.Users[2].Name, "svc-"), last, unmanaged)
}

func printDevBanner(w io.Writer, b devBanner) {
	t := b.Timings
	fmt.Fprintf(w, "keyrot dev: the whole flow on a built-in sandbox (a test double for AWS; no real keys).\n")
	fmt.Fprintf(w, "  users      %s\n", b.usersLine())
	fmt.Fprintf(w, "  timings    rotate every %s, deactivate the previous key %s later, delete it %s after that\n",
		keyrot.FormatDuration(t.rotateEvery), keyrot.FormatDuration(t.deactivateAfter), keyrot.FormatDuration(t.deleteAfter))
	fmt.Fprintf(w, "  sandbox    %s   (the AWS endpoint; admin access key %s)\n", b.Sandbox, b.AccessKeyID)
	fmt.Fprintf(w, "  REST API   %s\n", b.API)
	for _, l := range b.links() {
		fmt.Fprintf(w, "  %-10s %s   (%s)\n", l[0], l[1], l[2])
	}
	kept := "removed when dev stops; --dir DIR keeps them"
	if !b.Files.Temporary {
		kept = "kept"
	}
	fmt.Fprintf(w, "  config     %s, with the environment in %s (%s)\n", b.Files.Config, b.Files.Env, kept)

	next := [][2]string{
		{". " + b.Files.Env, "AWS_ENDPOINT_URL and the sandbox's key, KEYROT_API_KEY"},
		{"keyrot status --config " + b.Files.Config, "each user's keys, what happens next and when"},
		{"keyrot rotate --config " + b.Files.Config + " --dry-run", "what a pass would do now"},
		{"keyrot credentials ci-bot", "the current key, from the API"},
		{"keyrot credentials ci-bot --direct", "the same, straight from Secrets Manager"},
		{`curl -H "X-API-Key: $KEYROT_API_KEY" ` + b.API + "/credentials/ci-bot", "the API itself"},
	}
	if !b.Installed {
		next = append([][2]string{{"go install ./cmd/keyrot", "keyrot is not on your PATH yet"}}, next...)
	}
	width := 0
	for _, s := range next {
		width = max(width, len(s[0]))
	}
	fmt.Fprintf(w, "\nNext, in another terminal:\n")
	for _, s := range next {
		fmt.Fprintf(w, "  %-*s   # %s\n", width, s[0], s[1])
	}

	fmt.Fprintf(w, "\nA credential_process profile for the AWS CLI and SDKs (in ~/.aws/config; it needs KEYROT_API_KEY):\n")
	fmt.Fprintf(w, "  [profile keyrot-dev]\n")
	fmt.Fprintf(w, "  credential_process = keyrot credentials ci-bot --api %s --format credential_process\n", b.API)
	fmt.Fprintf(w, "then: aws --profile keyrot-dev --endpoint-url %s sts get-caller-identity\n", b.Sandbox)

	fmt.Fprintf(w, "\nEvery key event is a line below; Ctrl-C stops.\n")
}
