package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go/middleware"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/secretsmanager"
)

// callCounter counts the AWS operations made through a client, by name.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// instrument adds the counter to cfg's clients.
func (c *callCounter) instrument(cfg aws.Config) aws.Config {
	cfg.APIOptions = append(cfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			c.n[awsmiddleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	})
	return cfg
}

// take returns the counts so far and starts again.
func (c *callCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// servedKey is what a GET of one user's credentials returned.
type servedKey struct {
	id, age string
}

// TestServeFollowsPromotionsWithinTheBound is `keyrot serve`'s cache on the
// sandbox through the real SDK, with a driven clock: a promotion made by
// another process is served at the next poll (api.refresh, cut to a quarter
// of deactivate_after), each poll costs one ListSecrets page and reads only
// the moved user's value, and a read that fails (a throttled
// BatchGetSecretValue) keeps the last good key, served with its age, until
// a later poll reads the new one.
func TestServeFollowsPromotionsWithinTheBound(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	tm.createUser("deploy-bot")
	ctx := context.Background()
	cfgPath := tm.writeConfig(`
users: {names: [ci-bot, deploy-bot]}
rotation: {rotate_every: 5m, deactivate_after: 2m, delete_after: 1m}
notify: {via: log}
api: {refresh: 1m}
log: {format: json}
`)
	if code := tm.run(ctx, "rotate", "--config", cfgPath); code != exitOK {
		t.Fatalf("rotate: %d %s", code, tm.stderr)
	}
	cfg, err := config.Load(cfgPath, openFile, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	poll, clamped := cfg.APIPoll()
	if poll != 30*time.Second || !clamped {
		t.Fatalf("APIPoll = %s, %v; want api.refresh 1m cut to 30s", poll, clamped)
	}

	calls := &callCounter{n: map[string]int{}}
	store := secretsmanager.New(awssm.NewFromConfig(calls.instrument(tm.aws)), secretsmanager.Config{Prefix: cfg.Secrets.Prefix})
	clk := mock.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	cache := keyrothttp.NewCache(store, cfg.Policy(), keyrothttp.WithCacheClock(clk))
	apiKey, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "ci", Hash: hash, Users: []string{"*"}}}, RateLimit: -1}, cache)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	get := func(user string) servedKey {
		t.Helper()
		req, _ := http.NewRequest("GET", ts.URL+"/credentials/"+user, nil)
		req.Header.Set("X-API-Key", apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body keyrothttp.CredentialsResponse
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
			t.Fatalf("GET %s = %d", user, resp.StatusCode)
		}
		return servedKey{body.AccessKeyId, resp.Header.Get("X-Keyrot-Cache-Age")}
	}
	// What Secrets Manager says is current, read apart from the counted calls.
	truth := secretsmanager.New(awssm.NewFromConfig(tm.aws), secretsmanager.Config{Prefix: cfg.Secrets.Prefix})
	current := func(user string) string {
		t.Helper()
		c, err := truth.Current(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		return c.AccessKeyID
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cache.Run(runCtx, poll) }()
	defer func() {
		stop()
		<-done
	}()
	wait, cancelWait := context.WithTimeout(ctx, 20*time.Second)
	defer cancelWait()
	// tick moves the driven clock one poll on and returns once Run has
	// made that poll and waits for the next.
	tick := func() {
		t.Helper()
		clk.Advance(poll)
		if err := clk.BlockUntil(wait, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := clk.BlockUntil(wait, 1); err != nil { // the first load is done
		t.Fatal(err)
	}
	first := calls.take()
	if got, want := get("ci-bot"), (servedKey{current("ci-bot"), "0"}); got != want {
		t.Fatalf("served %+v, want %+v", got, want)
	}
	tick()
	if got := calls.take(); got["ListSecrets"] != 1 || got["BatchGetSecretValue"] != 0 || len(got) != 1 {
		t.Errorf("a poll with no promotion made %v, want one ListSecrets", got)
	}
	t.Logf("first load: %v; a poll with nothing promoted: 1 ListSecrets", first)

	// Another process promotes ci-bot's next key: served at the next poll.
	old := current("ci-bot")
	if code := tm.run(ctx, "rotate", "--config", cfgPath, "--user", "ci-bot", "--force"); code != exitOK {
		t.Fatalf("rotate --force: %d %s", code, tm.stderr)
	}
	next := current("ci-bot")
	if next == old {
		t.Fatal("rotate --force promoted no new key")
	}
	calls.take()
	if got := get("ci-bot"); got.id != old {
		t.Fatalf("served %s before the poll, want the previous key %s", got.id, old)
	}
	tick()
	if got, want := get("ci-bot"), (servedKey{next, "0"}); got != want {
		t.Fatalf("one poll (%s) after the promotion: served %+v, want %+v", poll, got, want)
	}
	if got := calls.take(); got["ListSecrets"] != 1 || got["BatchGetSecretValue"] != 1 || len(got) != 2 {
		t.Errorf("the poll that found ci-bot's promotion made %v, want 1 ListSecrets and 1 BatchGetSecretValue", got)
	}

	// The next promotion's value cannot be read (throttled past the SDK's
	// three attempts): the last good key is served, and ages.
	sb := tm.sb
	if code := tm.run(ctx, "rotate", "--config", cfgPath, "--user", "deploy-bot", "--force"); code != exitOK {
		t.Fatalf("rotate --force: %d %s", code, tm.stderr)
	}
	deployOld := get("deploy-bot").id
	sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: "BatchGetSecretValue", Kind: sandbox.FaultThrottle, Count: 3}}})
	tick()
	if got, want := get("deploy-bot"), (servedKey{deployOld, fmt.Sprint(poll.Seconds())}); got != want {
		t.Fatalf("throttled read: served %+v, want the last good key %+v", got, want)
	}
	if got := get("ci-bot"); got.age != "0" {
		t.Errorf("ci-bot, confirmed by the same poll, has age %s", got.age)
	}
	if got, want := cache.Stale(), poll; got != want {
		t.Errorf("Stale = %s, want %s", got, want)
	}
	tick() // the fault is spent
	if got, want := get("deploy-bot"), (servedKey{current("deploy-bot"), "0"}); got != want {
		t.Fatalf("after the throttle: served %+v, want %+v", got, want)
	}
	if cache.Stale() != 0 {
		t.Errorf("Stale = %s after a good poll", cache.Stale())
	}
}

// TestServePollCost measures what a poll costs with more users than one
// ListSecrets page holds: ceil(users/100) ListSecrets and no value read,
// against the ceil(users/100) + ceil(users/20) calls of rereading every
// value.
func TestServePollCost(t *testing.T) {
	tm := newTestMain(t)
	ctx := context.Background()
	const users = 130
	calls := &callCounter{n: map[string]int{}}
	store := secretsmanager.New(awssm.NewFromConfig(calls.instrument(tm.aws)), secretsmanager.Config{})
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range users {
		name := fmt.Sprintf("user-%03d", i)
		intent := keyrot.Intent{Generation: 1, At: at}
		if err := store.BeginCreate(ctx, keyrot.User{Name: name}, intent); err != nil {
			t.Fatal(err)
		}
		stored, err := store.StorePending(ctx, intent, keyrot.Credentials{UserName: name, AccessKeyID: fmt.Sprintf("AKIAUSER%012d", i), SecretAccessKey: "secret", CreateDate: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Promote(ctx, name, stored, "", at, keyrot.DefaultPolicy().Timings()); err != nil {
			t.Fatal(err)
		}
	}
	cache := keyrothttp.NewCache(store, keyrot.DefaultPolicy())
	calls.take()
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	load := calls.take()
	if err := cache.Load(ctx); err != nil {
		t.Fatal(err)
	}
	poll := calls.take()
	if got := len(cache.Current()); got != users {
		t.Fatalf("%d users cached, want %d", got, users)
	}
	if poll["ListSecrets"] != 2 || len(poll) != 1 || load["BatchGetSecretValue"] != 7 {
		t.Errorf("first load %v, poll %v; want 2 ListSecrets + 7 BatchGetSecretValue, then 2 ListSecrets", load, poll)
	}
	t.Logf("%d users: first load %v; each later poll with no promotion %v", users, load, poll)
}
