package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/slack"
	"github.com/keyrot/keyrot/webhook"
)

// bodies is an HTTP receiver that keeps every request body and answers
// with status after check passes (400 if check fails).
type bodies struct {
	mu     sync.Mutex
	status int
	check  func(r *http.Request, body []byte) error
	got    [][]byte
	errs   []error
}

func (b *bodies) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, body)
	if b.check != nil {
		if err := b.check(r, body); err != nil {
			b.errs = append(b.errs, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}
	w.WriteHeader(b.status)
}

func (b *bodies) all() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// storedSecrets are the secret access keys of every version of user's secret.
func storedSecrets(t *testing.T, h *harness, user string) []string {
	t.Helper()
	ctx := context.Background()
	sm := awssm.NewFromConfig(h.aws)
	id := aws.String("iam-key-rotation/" + user)
	versions, err := sm.ListSecretVersionIds(ctx, &awssm.ListSecretVersionIdsInput{SecretId: id, IncludeDeprecated: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	var secrets []string
	for _, v := range versions.Versions {
		out, err := sm.GetSecretValue(ctx, &awssm.GetSecretValueInput{SecretId: id, VersionId: v.VersionId})
		if err != nil {
			t.Fatal(err)
		}
		var val struct{ SecretAccessKey string }
		if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &val); err != nil || val.SecretAccessKey == "" {
			t.Fatalf("secret version: %v", err)
		}
		secrets = append(secrets, val.SecretAccessKey)
	}
	return secrets
}

// TestEventsToEveryChannel runs a rotation on the sandbox with a signed
// webhook, a webhook that is down, Slack and EventBridge configured: the
// key_created (the new key promoted), key_deactivated and key_deleted
// events reach each working channel, the webhook's deliveries verify, the
// one that is down is retried and counted without holding up the others,
// and no secret access key is in any body, detail or log line.
func TestEventsToEveryChannel(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	ctx := context.Background()
	user := "ci-bot"
	h.createUser(user, 1)
	var foreignSecret string
	for _, k := range h.sb.IssuedKeys() {
		foreignSecret = k.SecretAccessKey
	}
	if foreignSecret == "" {
		t.Fatal("no issued key in the sandbox")
	}

	// Deliveries wait on their own driven clock: retries cost nothing,
	// and the engine's clock moves only when the test moves it.
	notifyClock := mock.NewClock(t0)
	notifyClock.SetAutoAdvance(true)
	hmacSecret := "whsec-e2e-0123456789"
	hook := &bodies{status: http.StatusNoContent, check: func(r *http.Request, body []byte) error {
		return webhook.Verify([]byte(hmacSecret), r.Header, body, notifyClock.Now(), 0)
	}}
	down := &bodies{status: http.StatusInternalServerError}
	slackHook := &bodies{status: http.StatusOK}
	serve := func(b *bodies) string {
		srv := httptest.NewServer(b)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	hookURL, downURL, slackURL := serve(hook), serve(down), serve(slackHook)+"/services/T0/B0/zzslacksecretzz"
	env := map[string]string{"HOOK_SECRET": hmacSecret, "DOWN_SECRET": "other", "SLACK_URL": slackURL}

	cfg := h.config(user)
	cfg.Notify.Webhooks = []config.Webhook{
		{URL: hookURL + "/keyrot", SecretEnv: "HOOK_SECRET", Name: "receiver"},
		{URL: downURL + "/down", SecretEnv: "DOWN_SECRET", Name: "down", Events: []string{"key_created"}},
	}
	cfg.Notify.Slack = config.Slack{WebhookEnv: "SLACK_URL"}
	cfg.Notify.EventBridge = config.EventBridge{Enabled: true, Bus: "default"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var logs testkit.Buffer
	results := &mock.DeliveryResults{}
	a, err := app.New(ctx, cfg, app.Options{
		AWS: &h.aws, Clock: h.clock, NotifyClock: notifyClock, DeliveryResult: results.Hook,
		Logger:    slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(a.Channels); got != 4 {
		t.Fatalf("%d channels, want 4", got)
	}

	h.pass(a, keyrot.RunOptions{}) // the new key is created, verified and promoted
	start := h.clock.Now()
	h.clock.Set(start.Add(2 * time.Minute)) // the adopted key is deactivated
	h.pass(a, keyrot.RunOptions{})
	h.clock.Set(start.Add(3 * time.Minute)) // and deleted
	h.pass(a, keyrot.RunOptions{})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.Close(cctx); err != nil {
		t.Fatal(err)
	}

	wantKinds := []string{"key_created", "key_deactivated", "key_deleted"}
	// The webhook: every delivery verified, one per event, in order.
	if len(hook.errs) > 0 {
		t.Fatalf("receiver rejected deliveries: %v", hook.errs)
	}
	var kinds []string
	for _, b := range hook.all() {
		var p notify.Payload
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.User != user || !strings.HasPrefix(p.KeyID, "AKIA") || p.ID == "" || p.Summary == "" {
			t.Errorf("payload %+v", p)
		}
		kinds = append(kinds, p.Kind)
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("webhook got %v, want %v", kinds, wantKinds)
	}
	// Slack: one message each, in Block Kit.
	var texts []string
	for _, b := range slackHook.all() {
		var m slack.Message
		if err := json.Unmarshal(b, &m); err != nil || len(m.Blocks) == 0 {
			t.Fatalf("slack body %s: %v", b, err)
		}
		texts = append(texts, m.Text)
	}
	if len(texts) != 3 || !strings.HasPrefix(texts[0], "New access key:") || !strings.HasPrefix(texts[1], "Access key deactivated:") {
		t.Errorf("slack got %q", texts)
	}
	// EventBridge: the sandbox's bus.
	var types []string
	for _, e := range h.sb.BusEvents() {
		types = append(types, e.DetailType)
		if e.Source != "keyrot" {
			t.Errorf("source %q", e.Source)
		}
	}
	if want := []string{"Key Created", "Key Deactivated", "Key Deleted"}; !slices.Equal(types, want) {
		t.Errorf("bus got %v, want %v", types, want)
	}
	// The webhook that is down: its one event (it takes key_created only)
	// tried 6 times, counted, without holding up the others.
	if got, want := len(down.all()), 1+notify.DefaultRetries; got != want {
		t.Errorf("down webhook got %d attempts, want %d", got, want)
	}
	wantDown := append(slices.Repeat([]notify.Result{notify.ResultRetried}, notify.DefaultRetries), notify.ResultFailed)
	if got := results.Of("webhook:down"); !slices.Equal(got, wantDown) {
		t.Errorf("down results = %v, want %v", got, wantDown)
	}
	for _, target := range []string{"webhook:receiver", "slack", "eventbridge:default"} {
		if got := results.Of(target); !slices.Equal(got, slices.Repeat([]notify.Result{notify.ResultOK}, 3)) {
			t.Errorf("%s results = %v, want 3 ok", target, got)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"event delivery failed"`) {
		t.Error("the down webhook's failure was not logged")
	}

	// No secret anywhere: not the keys', not the HMAC secret, not the Slack URL.
	secrets := append(storedSecrets(t, h, user), foreignSecret, hmacSecret, "zzslacksecretzz")
	var outputs []string
	for _, b := range slices.Concat(hook.all(), down.all(), slackHook.all()) {
		outputs = append(outputs, string(b))
	}
	for _, e := range h.sb.BusEvents() {
		outputs = append(outputs, string(e.Detail))
	}
	outputs = append(outputs, strings.Split(logs.String(), "\n")...)
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("a secret is in %q", out)
			}
		}
	}
}

// TestChannelSecretUnset: a webhook whose secret variable is unset stops
// the engine from starting, naming the field and not the value.
func TestChannelSecretUnset(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	cfg := h.config("ci-bot")
	cfg.Notify.Webhooks = []config.Webhook{{URL: "https://hooks.example.com/k", SecretEnv: "HOOK_SECRET"}}
	cfg.Notify.Slack = config.Slack{WebhookEnv: "SLACK_URL"}
	for _, env := range []map[string]string{
		{"SLACK_URL": "https://hooks.slack.com/services/zz"},
		{"HOOK_SECRET": "zzhmaczz"},
		{"HOOK_SECRET": "zzhmaczz", "SLACK_URL": "http://hooks.slack.com/services/zz"},
	} {
		_, err := app.New(context.Background(), cfg, app.Options{AWS: &h.aws, Clock: h.clock,
			LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
		var cerr *config.Error
		if !errors.As(err, &cerr) || !strings.HasPrefix(cerr.Field, "notify.") || strings.Contains(err.Error(), "zz") {
			t.Errorf("app.New with %v: %v, want a config error naming the field and no secret", slices.Collect(maps.Keys(env)), err)
		}
	}
}

// TestServeNotifierReachesChannels: the notifier `keyrot serve` builds for
// API-key expiry warnings has the channels too and reads their secrets from
// the environment. (Repeats are held back before the notifier, by the API's
// record of what it sent: TestAPIKeyWarningsOncePerQuietPeriod.)
func TestServeNotifierReachesChannels(t *testing.T) {
	secret := "whsec-serve-0123456789"
	hook := &bodies{status: http.StatusOK, check: func(r *http.Request, body []byte) error {
		return webhook.Verify([]byte(secret), r.Header, body, time.Now(), 0)
	}}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	t.Setenv("KEYROT_TEST_SERVE_HOOK_SECRET", secret)
	cfg := config.Default()
	cfg.Users.Names = []string{"ci-bot"}
	cfg.Notify.Via = "log"
	cfg.Notify.Webhooks = []config.Webhook{{URL: srv.URL, SecretEnv: "KEYROT_TEST_SERVE_HOOK_SECRET"}}
	ctx := context.Background()
	ns, err := app.NewNotifier(ctx, cfg, aws.Config{Region: "us-east-1"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	warn := keyrot.Event{Kind: keyrot.EventWarning, Warning: keyrot.WarnAPIKeyExpiring, APIKey: "ci", Time: time.Now(), Summary: `API key "ci" expires at 2026-12-01T00:00:00Z.`}
	if err := ns.Notify(ctx, warn); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ns.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if got := hook.all(); len(got) != 1 || len(hook.errs) > 0 || !strings.Contains(string(got[0]), `"api_key":"ci"`) {
		t.Errorf("webhook got %q (rejected %v), want one verified api_key_expiring warning", got, hook.errs)
	}
}
