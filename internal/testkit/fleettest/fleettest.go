// Package fleettest builds, for tests, a small fleet with keys in every
// state a view must show: the sandbox on a driven clock, keyrot's engine
// run over it for a few passes (emails included, in the sandbox's outbox),
// and an Observer of the result.
package fleettest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// T0 is when the world begins.
var T0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// The users of the world.
const (
	// Adopted had a key of its own, which keyrot adopted and has deactivated.
	Adopted = "alice"
	// Fresh had no key; keyrot made one, which has been used.
	Fresh = "bob"
	// Exempt is tagged exempt (ExemptTag) and has a key keyrot leaves alone.
	Exempt = "carol"
	// Other is managed like Fresh; tests keep it out of an API key's scope.
	Other = "dave"
	// Missing is named in the config but not in IAM.
	Missing = "ghost"
	// ExemptTag marks exempt users.
	ExemptTag = "keyrot:exempt=true"
)

// World is the fleet.
type World struct {
	Sandbox  *sandbox.Server
	Clock    *mock.Clock
	App      *app.App
	Events   *fleet.EventLog
	Observer *fleet.Observer

	mu      sync.Mutex
	secrets []string
}

// Secrets returns every secret access key the world has made: those keyrot
// created (as it promoted them) and those created outside it. No view may
// show any of them.
func (w *World) Secrets() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.secrets)
}

func (w *World) keep(secret string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.secrets = append(w.secrets, secret)
}

// New builds the world: at T0 keyrot rotates alice (adopting her key),
// bob and dave; a minute later bob's key is used; at T0+2m a pass
// deactivates alice's old key. The clock is then at T0+2m30s: alice's old
// key is inactive and due for deletion at T0+3m, the next rotations at
// T0+5m. Every email has been delivered to the sandbox's outbox.
func New(t testing.TB) *World {
	t.Helper()
	ctx := context.Background()
	clock := mock.NewClock(T0)
	clock.SetAutoAdvance(true) // propagation and backoff waits cost nothing
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 17})
	awsCfg := sandboxtest.Config(t, sb)
	w := &World{Sandbox: sb, Clock: clock, Events: fleet.NewEventLog(20, T0)}

	client := awsiam.NewFromConfig(awsCfg)
	for _, u := range []struct {
		name   string
		tags   map[string]string
		hasKey bool
	}{
		{Adopted, map[string]string{"keyrot:owner": "alice@example.com"}, true},
		{Fresh, nil, false},
		{Exempt, map[string]string{"keyrot:exempt": "true"}, true},
		{Other, nil, false},
	} {
		in := &awsiam.CreateUserInput{UserName: aws.String(u.name)}
		for k, v := range u.tags {
			in.Tags = append(in.Tags, iamtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		if _, err := client.CreateUser(ctx, in); err != nil {
			t.Fatalf("fleettest: create user %s: %v", u.name, err)
		}
		if u.hasKey {
			out, err := client.CreateAccessKey(ctx, &awsiam.CreateAccessKeyInput{UserName: aws.String(u.name)})
			if err != nil {
				t.Fatalf("fleettest: create key for %s: %v", u.name, err)
			}
			w.keep(aws.ToString(out.AccessKey.SecretAccessKey))
		}
	}

	cfg := config.Default()
	cfg.Users.Names = []string{Adopted, Fresh, Exempt, Other, Missing}
	cfg.Users.ExemptTag = ExemptTag
	cfg.Rotation.IAMRate = 10000
	// One user at a time: the sandbox hands out the same key ids in every
	// run, so that reports of the world can be compared with golden files.
	cfg.Rotation.Concurrency = 1
	cfg.Notify.Sender, cfg.Notify.Admin = "keyrot@example.com", "security@example.com"
	cfg.Notify.SendRate = 1000 // the sandbox's SES has no rate limit here
	if err := cfg.Validate(); err != nil {
		t.Fatalf("fleettest: config: %v", err)
	}
	published := &mock.Publisher{PublishFn: func(c keyrot.Credentials) { w.keep(c.SecretAccessKey) }}
	a, err := app.New(ctx, cfg, app.Options{AWS: &awsCfg, Clock: clock, Publisher: published, Observe: w.Events.Add})
	if err != nil {
		t.Fatalf("fleettest: app: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Close(cctx)
	})
	w.App = a

	pass := func() {
		t.Helper()
		sum, err := a.Rotator.ReconcileAll(ctx, keyrot.RunOptions{})
		if err != nil {
			t.Fatalf("fleettest: pass: %v", err)
		}
		for _, r := range sum.Results {
			if r.Err != nil {
				t.Fatalf("fleettest: pass at %s: %s: %v", clock.Now().Format(time.RFC3339), r.User, r.Err)
			}
		}
	}
	pass()
	clock.SetAutoAdvance(false)
	clock.Set(T0.Add(time.Minute))
	creds, err := a.Store.Current(ctx, Fresh)
	if err != nil {
		t.Fatalf("fleettest: read %s's key: %v", Fresh, err)
	}
	userCfg := sandboxtest.UserConfig(t, sb, creds.AccessKeyID, creds.SecretAccessKey)
	if _, err := sts.NewFromConfig(userCfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
		t.Fatalf("fleettest: use %s's key: %v", Fresh, err)
	}
	clock.Set(T0.Add(2 * time.Minute))
	pass()
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("fleettest: deliver the emails: %v", err)
	}
	clock.Set(T0.Add(150 * time.Second))
	w.Observer = &fleet.Observer{Planner: a.Rotator, Keys: a.Keys, Clock: clock}
	return w
}
