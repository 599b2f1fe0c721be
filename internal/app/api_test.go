package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
)

// TestAPIComponent runs the API component on the sandbox through the real
// SDK, its goroutines on a driven clock: the cache refresh finds a key the
// engine promoted, the watcher rereads api.keys_secret through the
// secretsmanager adapter, both wait only on the injected clock, and Close
// returns only once both goroutines have ended.
func TestAPIComponent(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	h.createUser("ci-bot", 0)
	cfg := h.config("ci-bot")
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.KeysSecret = "keyrot/api-keys"
	cfg.API.Refresh = config.Duration(30 * time.Second) // the poll too: deactivate_after/4 is 30s
	cfg.API.KeyWarnBefore = 0

	keyA, entryA := newAPIKey(t, "a", h.clock.Now())
	keyB, entryB := newAPIKey(t, "b", h.clock.Now())
	sm := awssm.NewFromConfig(h.aws)
	writeKeys := func(create bool, keys ...keyrothttp.APIKey) {
		t.Helper()
		body, err := json.Marshal(keys)
		if err != nil {
			t.Fatal(err)
		}
		if create {
			_, err = sm.CreateSecret(ctx, &awssm.CreateSecretInput{Name: aws.String(cfg.API.KeysSecret), SecretString: aws.String(string(body))})
		} else {
			_, err = sm.PutSecretValue(ctx, &awssm.PutSecretValueInput{SecretId: aws.String(cfg.API.KeysSecret), SecretString: aws.String(string(body))})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	writeKeys(true, entryA)

	clock := mock.NewClock(t0)
	var (
		mu    sync.Mutex
		ended []string
	)
	logs := &testkit.Buffer{} // the audit records included
	opts := app.APIOptions{Logger: slog.New(slog.NewTextHandler(logs, nil)), Clock: clock, Serve: true}
	app.SetLoopDone(&opts, func(name string) {
		mu.Lock()
		ended = append(ended, name)
		mu.Unlock()
	})
	api, err := app.NewAPI(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The engine stands for another process: it does not publish into this cache.
	eng := h.engine(cfg, nil)
	addrs, err := api.Open(ctx, app.APIDeps{Store: app.NewStore(h.aws, cfg.Secrets.Prefix, ""), Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = api.Close(ctx)
		}
	})
	get := func(key string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, addrs["api"]+"/credentials/ci-bot", nil)
		req.Header.Set("X-API-Key", key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// tick moves the API's clock one refresh on, once both goroutines wait
	// on it, and returns once both wait again: the refresh is done.
	tick := func() {
		t.Helper()
		if err := clock.BlockUntil(waitCtx, 2); err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Second)
		if err := clock.BlockUntil(waitCtx, 2); err != nil {
			t.Fatal(err)
		}
	}

	if got := get(keyA); got != http.StatusNotFound {
		t.Fatalf("key a before any rotation: %d, want 404 (no key yet)", got)
	}
	h.pass(eng, keyrot.RunOptions{}) // a key is promoted
	writeKeys(false, entryA, entryB)
	if got := get(keyB); got != http.StatusUnauthorized {
		t.Fatalf("key b before the refresh: %d, want 401", got)
	}
	tick()
	if got := get(keyB); got != http.StatusOK {
		t.Fatalf("key b after the refresh: %d, want 200 (the keys reread, the promoted key in the cache)", got)
	}
	if got, want := clock.Waits(), slices.Repeat([]time.Duration{30 * time.Second}, 4); !slices.Equal(got, want) {
		t.Errorf("the goroutines waited %v, want %v (each api.refresh, on the injected clock)", got, want)
	}

	if err := api.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	for _, key := range []string{keyA, keyB} {
		if strings.Contains(logs.String(), key) {
			t.Errorf("an API key is in the log:\n%s", logs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(ended)
	if want := []string{"api key watcher", "cache refresh"}; !slices.Equal(ended, want) {
		t.Fatalf("when Close returned these goroutines had ended: %v, want %v", ended, want)
	}
}

// TestAPIWithoutServing: run --no-api builds no server and no goroutine,
// and still counts the engine's events.
func TestAPIWithoutServing(t *testing.T) {
	api, err := app.NewAPI(config.Default(), app.APIOptions{Clock: mock.NewClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	o := api.EngineOptions(app.Options{})
	if o.Publisher != nil || o.Observe == nil || o.NotifyResult == nil {
		t.Fatalf("engine options without serving: publisher %v, observe set %v, notify result set %v", o.Publisher, o.Observe != nil, o.NotifyResult != nil)
	}
	addrs, err := api.Open(context.Background(), app.APIDeps{})
	if err != nil || len(addrs) != 0 || api.Handler() != nil {
		t.Fatalf("Open without serving = %v, %v; handler %v", addrs, err, api.Handler())
	}
	if err := api.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func newAPIKey(t *testing.T, name string, now time.Time) (string, keyrothttp.APIKey) {
	t.Helper()
	key, entry, err := keyrothttp.NewKey(name, []string{keyrothttp.AllUsers}, false, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	return key, entry
}
