package app_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/restclient"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/internal/testkit/githubtest"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
)

const githubToken = "github_pat_11E2ETESTTOKEN"

// syncEngine is an engine on the harness whose sync target is the fake
// GitHub; its requests retry on a clock of their own, so backoff costs no
// time and leaves the engine's clock alone.
func (h *harness) syncEngine(cfg config.Config, logs *testkit.Buffer) *app.App {
	h.t.Helper()
	retryClock := mock.NewClock(t0)
	retryClock.SetAutoAdvance(true)
	a, err := app.New(context.Background(), cfg, app.Options{AWS: &h.aws, Clock: h.clock, Notifier: h.events,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LookupEnv:  func(k string) (string, bool) { return githubToken, k == config.GitHubTokenEnv },
		SyncClient: &restclient.Client{Clock: retryClock, Attempts: 3, Timeout: 5 * time.Second}})
	if err != nil {
		h.t.Fatalf("app.New: %v", err)
	}
	return a
}

func keyStatusOf(keys []iamtypes.AccessKeyMetadata, id string) iamtypes.StatusType {
	for _, k := range keys {
		if aws.ToString(k.AccessKeyId) == id {
			return k.Status
		}
	}
	return "gone"
}

// The GitHub target fails from the moment a rotation makes a new key
// current: the previous key stays Active past deactivate_after while
// GitHub has not confirmed its successor; once GitHub works again the key
// is deactivated on the next pass, and the failure and the recovery are
// each told once. What GitHub stores decrypts to the current key.
func TestGitHubTargetFailureHoldsThePreviousKey(t *testing.T) {
	for _, bulk := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk_observe=%v", bulk), func(t *testing.T) { testGitHubTargetFailure(t, bulk) })
	}
}

func testGitHubTargetFailure(t *testing.T, bulk bool) {
	ctx := context.Background()
	h := newHarness(t, sandbox.Faults{})
	h.createUser("ci-bot", 0)
	gh := githubtest.Start(t, githubToken)
	cfg := h.config("ci-bot")
	cfg.Rotation.BulkObserve = bulk
	cfg.Sync.GitHub = []config.GitHubTarget{{Repo: "acme/app", APIURL: gh.URL, Users: []string{"ci-*"}}}
	logs := &testkit.Buffer{}
	a := h.syncEngine(cfg, logs)
	var secrets []string // every key's secret access key, to look for in the log
	delivered := func() string {
		t.Helper()
		cur, err := a.Store.Current(ctx, "ci-bot")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, cur.SecretAccessKey)
		id, _ := gh.Secret("repos/acme/app/AWS_ACCESS_KEY_ID")
		secret, _ := gh.Secret("repos/acme/app/AWS_SECRET_ACCESS_KEY")
		if id.Value != cur.AccessKeyID || secret.Value != cur.SecretAccessKey {
			t.Errorf("GitHub holds key %q (secret matches: %v), want the current key %s", id.Value, secret.Value == cur.SecretAccessKey, cur.AccessKeyID)
		}
		return cur.AccessKeyID
	}

	h.pass(a, keyrot.RunOptions{}) // the first key, delivered at once
	first := delivered()

	// From the next rotation on, GitHub answers 500.
	gh.Fail(func(*http.Request) int { return http.StatusInternalServerError })
	kh := newKeyHistory()
	rotateAt := t0.Add(5 * time.Minute)
	h.runPasses(a.Rotator, "ci-bot", rotateAt.Add(time.Second), kh)
	st, err := a.Store.Load(ctx, "ci-bot")
	if err != nil || st.Current == nil || st.Current.KeyID == first {
		t.Fatalf("no rotation by %v: %+v, %v", h.clock.Now(), st.Current, err)
	}
	second, promoted := st.Current.KeyID, st.CurrentSince
	// Well past deactivate_after (2m), the previous key is still Active.
	h.runPasses(a.Rotator, "ci-bot", promoted.Add(4*time.Minute), kh)
	if got := keyStatusOf(h.keys("ci-bot"), first); got != iamtypes.StatusTypeActive {
		t.Fatalf("previous key %s is %s at %v, 4m after its successor became current, while GitHub fails", first, got, h.clock.Now())
	}
	if n := h.events.Count(keyrot.EventSyncFailed); n != 1 {
		t.Errorf("sync_failed told %d times, want 1", n)
	}
	sum, err := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if ts := sum.Results[0].Targets; len(ts) != 1 || ts[0].Confirmed || ts[0].FailingSince.IsZero() || ts[0].KeyID != first {
		t.Errorf("target state = %+v, want failing, still holding %s", ts, first)
	}

	// GitHub recovers: the next pass delivers, then deactivates.
	gh.Fail(nil)
	h.clock.Advance(15 * time.Second)
	h.pass(a, keyrot.RunOptions{})
	if got := delivered(); got != second {
		t.Errorf("GitHub holds %s, want %s", got, second)
	}
	if got := keyStatusOf(h.keys("ci-bot"), first); got != iamtypes.StatusTypeInactive {
		t.Errorf("previous key %s is %s on the pass after GitHub recovered, want Inactive", first, got)
	}
	if n := h.events.Count(keyrot.EventSyncRecovered); n != 1 {
		t.Errorf("sync_recovered told %d times, want 1", n)
	}

	// A restarted engine neither pushes the confirmed key again nor
	// forgets it; the next rotation is delivered and retires on time.
	calls := len(gh.Calls())
	a = h.syncEngine(cfg, logs)
	h.pass(a, keyrot.RunOptions{})
	if got := len(gh.Calls()); got != calls {
		t.Errorf("a restart made %d more GitHub calls", got-calls)
	}
	h.runPasses(a.Rotator, "ci-bot", h.clock.Now().Add(8*time.Minute), kh)
	third := delivered()
	if third == second {
		t.Fatalf("no rotation after the recovery")
	}
	kh.checkNoAbruptDeletion(t, time.Minute)

	// Each event was told once, by email and in the log.
	told := map[string]int{}
	for _, e := range h.events.Events() {
		told[fmt.Sprintf("%s %s", e.Kind, e.KeyID)]++
		if e.Kind == keyrot.EventWarning {
			t.Errorf("unexpected warning: %s", e.Summary)
		}
	}
	for key, n := range told {
		if n != 1 {
			t.Errorf("%s told %d times", key, n)
		}
	}
	for _, want := range []string{"key_created " + second, "key_deactivated " + first, "key_deleted " + first, "sync_failed " + second, "sync_recovered " + second, "key_created " + third} {
		if told[want] != 1 {
			t.Errorf("%s not told (told: %v)", want, told)
		}
	}
	if n := strings.Count(logs.String(), "event=sync_failed"); n != 1 {
		t.Errorf("sync_failed logged %d times, want 1", n)
	}
	for _, secret := range append(secrets, githubToken) {
		if strings.Contains(logs.String(), secret) {
			t.Error("a secret access key or the GitHub token is in the log")
		}
	}
}

func TestSyncTargetWithoutTokenIsAConfigError(t *testing.T) {
	h := newHarness(t, sandbox.Faults{})
	cfg := h.config("ci-bot")
	cfg.Sync.GitLab = []config.GitLabTarget{{Project: "acme/app", Users: []string{"ci-bot"}}}
	_, err := app.New(context.Background(), cfg, app.Options{AWS: &h.aws, Clock: h.clock, Notifier: h.events,
		LookupEnv: func(string) (string, bool) { return "", false }})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Field != config.GitLabTokenEnv {
		t.Fatalf("app.New = %v, want a config error naming %s", err, config.GitLabTokenEnv)
	}
	// A process that only shows state (status, report) needs no token.
	a, err := app.New(context.Background(), cfg, app.Options{AWS: &h.aws, Clock: h.clock, Notifier: h.events})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSyncAsAGitHubApp(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, sandbox.Faults{})
	h.createUser("ci-bot", 0)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	gh := githubtest.Start(t, githubToken)
	gh.App("1234", 42, &key.PublicKey, time.Now)
	cfg := h.config("ci-bot")
	cfg.Sync.GitHub = []config.GitHubTarget{{Repo: "acme/app", APIURL: gh.URL, AppID: "1234", InstallationID: 42, Users: []string{"ci-bot"}}}
	env := map[string]string{config.GitHubAppKeyEnv: keyPEM} // no KEYROT_GITHUB_TOKEN
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	a, err := app.New(ctx, cfg, app.Options{AWS: &h.aws, Clock: h.clock, Notifier: h.events, LookupEnv: lookup})
	if err != nil {
		t.Fatal(err)
	}
	h.pass(a, keyrot.RunOptions{})
	cur, err := a.Store.Current(ctx, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := gh.Secret("repos/acme/app/AWS_SECRET_ACCESS_KEY"); got.Value != cur.SecretAccessKey {
		t.Error("the App did not deliver the current key")
	}
	// A key that is not PEM is a config error that does not echo it.
	env[config.GitHubAppKeyEnv] = "-----BEGIN NOTHING-----\nc2VjcmV0\n"
	_, err = app.New(ctx, cfg, app.Options{AWS: &h.aws, Clock: h.clock, Notifier: h.events, LookupEnv: lookup})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Field != config.GitHubAppKeyEnv || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("app.New with a bad key = %v, want a config error naming %s", err, config.GitHubAppKeyEnv)
	}
}
