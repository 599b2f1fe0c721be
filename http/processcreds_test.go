package http_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// helperEnv makes the test binary act as `keyrot credentials USER
// --format credential_process`: the command an ~/.aws/config
// credential_process line runs.
const helperEnv = "KEYROT_TEST_CREDENTIAL_PROCESS"

func TestMain(m *testing.M) {
	if user := os.Getenv(helperEnv); user != "" {
		c := &keyrothttp.Client{BaseURL: os.Getenv("KEYROT_API"), APIKey: os.Getenv("KEYROT_API_KEY")}
		out, err := c.Credentials(context.Background(), user, keyrothttp.FormatCredentialProcess)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(out)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// recordingProvider remembers which access keys the SDK loaded.
type recordingProvider struct {
	aws.CredentialsProvider
	mu   sync.Mutex
	keys []string
}

func (p *recordingProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := p.CredentialsProvider.Retrieve(ctx)
	if err == nil {
		p.mu.Lock()
		p.keys = append(p.keys, c.AccessKeyID)
		p.mu.Unlock()
	}
	return c, err
}

func (p *recordingProvider) loaded() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.keys...)
}

// TestCredentialProcessAcrossRotations runs the SDK's own credential_process
// provider against the API and calls the sandbox's STS with what it loads,
// continuously, while the user's key is rotated twice on short timings: the
// new key is published, and the old one deactivated and deleted on
// schedule. Not one call may fail: the Expiration the API hands out makes
// the SDK refetch before its key is deactivated.
func TestCredentialProcessAcrossRotations(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 9 s of wall time: the SDK's credential cache expires on the wall clock")
	}
	ctx := context.Background()
	sb := sandboxtest.Start(t, sandbox.Options{})
	admin := iam.NewFromConfig(sandboxtest.Config(t, sb))
	if _, err := admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("app")}); err != nil {
		t.Fatal(err)
	}
	// A second between the SDK's refresh (Expiration) and the deactivation, for a loaded CI machine.
	policy := keyrot.Policy{RotateEvery: 3 * time.Second, DeactivateAfter: 2 * time.Second, DeleteAfter: 500 * time.Millisecond}
	cache := keyrothttp.NewCache(nil, policy)
	apiKey, hash, _ := keyrothttp.GenerateAPIKey()
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "app", Hash: hash, Users: []string{"app"}}}}, cache)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	// rotate creates a key and publishes it, as the rotator does on promote.
	rotate := func() string {
		t.Helper()
		out, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("app")})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		cache.Publish(keyrot.Credentials{UserName: "app", AccessKeyID: *out.AccessKey.AccessKeyId, SecretAccessKey: *out.AccessKey.SecretAccessKey, CreateDate: now, CurrentSince: now})
		return *out.AccessKey.AccessKeyId
	}

	provider := &recordingProvider{CredentialsProvider: processcreds.NewProviderCommand(processcreds.NewCommandBuilderFunc(func(ctx context.Context) (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=app", "KEYROT_API="+ts.URL, "KEYROT_API_KEY="+apiKey)
		return cmd, nil
	}))}
	cfg := sandboxtest.UserConfig(t, sb, "unused", "unused")
	cfg.Credentials = aws.NewCredentialsCache(provider)
	cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} } // a failed call must show
	client := sts.NewFromConfig(cfg)

	type step struct {
		at time.Time
		do func()
	}
	keys := []string{rotate()}
	start := time.Now()
	var steps []step
	schedule := func(d time.Duration, f func()) { steps = append(steps, step{start.Add(d), f}) }
	for i := range 2 {
		base := time.Duration(i+1) * policy.RotateEvery
		schedule(base, func() { keys = append(keys, rotate()) })
		schedule(base+policy.DeactivateAfter, func() {
			if _, err := admin.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String("app"), AccessKeyId: aws.String(keys[i]), Status: iamtypes.StatusTypeInactive}); err != nil {
				t.Fatal(err)
			}
		})
		schedule(base+policy.DeactivateAfter+policy.DeleteAfter, func() {
			if _, err := admin.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String("app"), AccessKeyId: aws.String(keys[i])}); err != nil {
				t.Fatal(err)
			}
		})
	}
	end := start.Add(2*policy.RotateEvery + policy.DeactivateAfter + policy.DeleteAfter + 500*time.Millisecond)

	// The application: calls STS every 20 ms while keys rotate.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	calls := 0
	for now := range tick.C {
		for len(steps) > 0 && !now.Before(steps[0].at) {
			steps[0].do()
			steps = steps[1:]
		}
		if now.After(end) {
			break
		}
		if _, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatalf("call %d at +%s failed: %v", calls, now.Sub(start).Round(time.Millisecond), err)
		}
		calls++
	}
	// Control: the sandbox does reject the rotated-out keys, so the calls
	// above succeeded because the SDK moved on in time.
	old := sts.NewFromConfig(sandboxtest.UserConfig(t, sb, keys[0], "unused"))
	if _, err := old.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err == nil {
		t.Error("the sandbox accepted a deleted key")
	}
	loaded := provider.loaded()
	t.Logf("%d STS calls; the SDK loaded %v; keys %v", calls, loaded, keys)
	for _, k := range keys {
		found := false
		for _, l := range loaded {
			found = found || l == k
		}
		if !found {
			t.Errorf("the SDK never loaded key %s", k)
		}
	}
}
