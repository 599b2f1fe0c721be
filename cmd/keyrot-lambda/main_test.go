package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
	"github.com/keyrot/keyrot/secretsmanager"
)

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// env is the function's configuration as the template sets it, with the
// seed's timings.
func env(extra map[string]string) func(string) (string, bool) {
	m := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME": "iam-key-rotation-Function-ABC",
		"KEYROT_USERS":             "ci-bot",
		"KEYROT_USER_TAG":          "",
		"KEYROT_PATH_PREFIX":       "/",
		"KEYROT_ROTATE_EVERY":      "5m",
		"KEYROT_DEACTIVATE_AFTER":  "2m",
		"KEYROT_DELETE_AFTER":      "1m",
		"KEYROT_SECRET_PREFIX":     "iam-key-rotation/",
		"KEYROT_NOTIFY_VIA":        "ses",
		"KEYROT_NOTIFY_SENDER":     "keys@example.com",
		"KEYROT_NOTIFY_ADMIN":      "admin@example.com",
		"KEYROT_LOG_FORMAT":        "json",
		"KEYROT_IAM_RATE":          "1000",
		"LOG_LEVEL":                "debug",
	}
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// fixture is a sandbox on a driven clock and a handler wired to it.
type fixture struct {
	t      *testing.T
	sb     *sandbox.Server
	clock  *mock.Clock
	aws    aws.Config
	iam    *awsiam.Client
	sm     *awssm.Client
	out    *testkit.Buffer
	events *mock.Notifier
	h      *handler
}

func newFixture(t *testing.T, extraEnv map[string]string) *fixture {
	t.Helper()
	// Waits move the driven clock at once, so IAM's propagation delay costs nothing.
	clock := mock.NewClock(t0)
	clock.SetAutoAdvance(true)
	sb := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 11, Faults: sandbox.Faults{PropagationDelay: 9 * time.Second}})
	cfg := sandboxtest.Config(t, sb)
	f := &fixture{t: t, sb: sb, clock: clock, aws: cfg, iam: awsiam.NewFromConfig(cfg), sm: awssm.NewFromConfig(cfg), out: &testkit.Buffer{}, events: &mock.Notifier{}}
	ctx := context.Background()
	if _, err := f.iam.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String("ci-bot")}); err != nil {
		t.Fatalf("create user: %v", err)
	}
	h, err := newHandler(ctx, options{LookupEnv: env(extraEnv), Stdout: f.out, AWS: &cfg, Clock: clock, Observe: func(e keyrot.Event) { _ = f.events.Notify(context.Background(), e) }})
	if err != nil {
		t.Fatalf("newHandler: %v", err)
	}
	f.h = h
	return f
}

// invoke runs the handler as Lambda would, with a minute to run.
func (f *fixture) invoke(event string) fleet.PassReport {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: "req-" + f.clock.Now().Format("150405")})
	res, err := f.h.invoke(ctx, json.RawMessage(event))
	if err != nil {
		f.t.Fatalf("invoke at %s: %v", f.clock.Now().Format(time.TimeOnly), err)
	}
	if len(res.Failures()) > 0 {
		f.t.Fatalf("invoke at %s: failures %+v", f.clock.Now().Format(time.TimeOnly), res.Failures())
	}
	return res
}

func (f *fixture) keys() []string {
	f.t.Helper()
	out, err := f.iam.ListAccessKeys(context.Background(), &awsiam.ListAccessKeysInput{UserName: aws.String("ci-bot")})
	if err != nil {
		f.t.Fatalf("list keys: %v", err)
	}
	var ids []string
	for _, k := range out.AccessKeyMetadata {
		ids = append(ids, aws.ToString(k.AccessKeyId)+":"+string(k.Status))
	}
	return ids
}

// currentSecret reads the user's current key from Secrets Manager the way
// every reader does (following member 0's pointer): the real secret, to
// search every output for.
func (f *fixture) currentSecret() (keyID, secret string) {
	f.t.Helper()
	store := secretsmanager.New(f.sm, secretsmanager.Config{Prefix: "iam-key-rotation/"})
	creds, err := store.Current(context.Background(), "ci-bot")
	if err != nil {
		f.t.Fatalf("current credentials: %v", err)
	}
	if creds.SecretAccessKey == "" {
		f.t.Fatal("the secret holds no SecretAccessKey")
	}
	return creds.AccessKeyID, creds.SecretAccessKey
}

// TestHandlerFullCycle invokes the handler once a minute, as the schedule
// does, on the seed's timings: a key is created, the previous one
// deactivated 2 minutes later and deleted 1 minute after that, and the next
// key comes 5 minutes after the first.
func TestHandlerFullCycle(t *testing.T) {
	f := newFixture(t, nil)
	type step struct {
		at                        time.Duration
		created, deactivated, del int
		keys                      int // the user's keys after the invocation
	}
	// IAM takes 9 s to accept a new key, so each new key becomes current
	// 9 s after it is created: the previous key is due for deactivation at
	// +7m09s, which the +8m invocation does; its deletion is due a minute
	// after that. The next key is due 5 minutes after the last one was created.
	steps := []step{
		{at: 0, created: 1, keys: 1},
		{at: 1 * time.Minute, keys: 1},
		{at: 4 * time.Minute, keys: 1},
		{at: 5 * time.Minute, created: 1, keys: 2},
		{at: 6 * time.Minute, keys: 2},
		{at: 7 * time.Minute, keys: 2},
		{at: 8 * time.Minute, deactivated: 1, keys: 2},
		{at: 9 * time.Minute, del: 1, keys: 1},
		{at: 10 * time.Minute, created: 1, keys: 2},
	}
	var (
		secrets []string
		first   string
		start   time.Time // when the first pass ended
	)
	for _, s := range steps {
		// A pass's own waits (key propagation) move the driven clock: the
		// schedule fires at whole minutes after the first pass.
		if s.at > 0 {
			f.clock.Set(start.Add(s.at))
		}
		res := f.invoke(`{"version":"0","id":"x","detail-type":"Scheduled Event","source":"aws.events","time":"2026-11-02T09:00:00Z","detail":{}}`)
		if s.at == 0 {
			first = res.Results[0].CurrentKeyID
			start = f.clock.Now()
		}
		if got, want := [3]int{res.Created, res.Deactivated, res.Deleted}, [3]int{s.created, s.deactivated, s.del}; got != want {
			t.Fatalf("at +%s: created/deactivated/deleted = %v, want %v (keys %v)", s.at, got, want, f.keys())
		}
		if got, want := len(f.keys()), s.keys; got != want {
			t.Fatalf("at +%s: user has keys %v, want %d", s.at, f.keys(), want)
		}
		if got, want := res.Users, 1; got != want {
			t.Errorf("at +%s: users = %d, want %d", s.at, got, want)
		}
		id, secret := f.currentSecret()
		if got, want := res.Results[0].CurrentKeyID, id; got != want {
			t.Errorf("at +%s: summary's current key %s, secret holds %s", s.at, got, want)
		}
		secrets = append(secrets, secret)
	}
	if last, _ := f.currentSecret(); last == first {
		t.Errorf("no rotation after rotate_every: current key still %s", first)
	}
	// Readers are told the one-minute schedule's lateness with the key.
	store := secretsmanager.New(f.sm, secretsmanager.Config{Prefix: "iam-key-rotation/"})
	cur, err := store.Current(context.Background(), "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cur.Timings, (keyrot.Timings{RotateEvery: 5 * time.Minute, DeactivateAfter: 2 * time.Minute, StepLateness: time.Minute}); got != want {
		t.Errorf("stored timings = %+v, want %+v", got, want)
	}
	if got, want := cur.Annotate(f.clock.Now()).NextRotation, cur.CreateDate.Add(6*time.Minute); !got.Equal(want) {
		t.Errorf("NextRotation = %v, want %v (rotate_every + the schedule's minute)", got, want)
	}
	for kind, want := range map[keyrot.EventKind]int{keyrot.EventKeyCreated: 3, keyrot.EventKeyDeactivated: 1, keyrot.EventKeyDeleted: 1, keyrot.EventRotationFailed: 0} {
		if got := f.events.Count(kind); got != want {
			t.Errorf("%s events = %d, want %d", kind, got, want)
		}
	}

	// Every event was emailed through SES before its invocation returned,
	// without a secret access key.
	mails := f.sb.Outbox()
	if got, want := len(mails), f.events.Count(keyrot.EventKeyCreated)+f.events.Count(keyrot.EventKeyDeactivated)+f.events.Count(keyrot.EventKeyDeleted); got < want {
		t.Errorf("SES sent %d emails for %d key events", got, want)
	}
	for _, m := range mails {
		if got, want := m.From, "keys@example.com"; !strings.Contains(got, want) {
			t.Errorf("email from %q, want %q", got, want)
		}
		for _, secret := range secrets {
			if strings.Contains(m.Subject+m.Text+m.HTML+m.Raw, secret) {
				t.Fatalf("email %q contains a secret access key", m.Subject)
			}
		}
	}

	// Every stdout line is JSON: log records or EMF records, one EMF per
	// invocation, and no secret access key anywhere.
	out := f.out.String()
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Fatal("a secret access key appears in the function's output")
		}
	}
	// Each line is one JSON object without a key twice (the engine's
	// records name their own system, not "lambda" as well).
	recs, err := testkit.JSONLines([]byte(out))
	if err != nil {
		t.Fatalf("stdout: %v", err)
	}
	var emf []map[string]any
	for _, rec := range recs {
		if _, ok := rec["_aws"]; ok {
			emf = append(emf, rec)
		}
	}
	if got, want := len(emf), len(steps); got != want {
		t.Fatalf("EMF records = %d, want one per invocation (%d)", got, want)
	}
	var created float64
	for _, rec := range emf {
		created += rec["KeysCreated"].(float64)
		if got, want := rec["FunctionName"], "iam-key-rotation-Function-ABC"; got != want {
			t.Errorf("EMF FunctionName = %v, want %v", got, want)
		}
	}
	if got, want := created, 3.0; got != want {
		t.Errorf("KeysCreated summed over the EMF records = %v, want %v", got, want)
	}
	if !strings.Contains(out, `"msg":"ready"`) || !strings.Contains(out, `"init_ms"`) {
		t.Error("no ready line with init_ms in the log")
	}
	if !strings.Contains(out, `"request_id":"req-`) {
		t.Error("log lines do not carry the Lambda request id")
	}
}

// TestHandlerForceAndDryRun checks the manual invocation payloads.
func TestHandlerForceAndDryRun(t *testing.T) {
	f := newFixture(t, nil)
	first := f.invoke(`{}`)
	if got, want := first.Created, 1; got != want {
		t.Fatalf("first pass created %d, want %d", got, want)
	}
	f.clock.Advance(time.Minute)

	dry := f.invoke(`{"force":true,"dry_run":true}`)
	if got, want := dry.Created, 0; got != want {
		t.Errorf("dry run created %d keys, want %d", got, want)
	}
	if !dry.DryRun || len(dry.Results) != 1 || len(dry.Results[0].Planned) == 0 || !strings.HasPrefix(dry.Results[0].Planned[0], "create") {
		t.Errorf("dry run with force: result %+v, want a planned create", dry)
	}
	if got, want := len(f.keys()), 1; got != want {
		t.Errorf("after a dry run the user has %d keys, want %d", got, want)
	}

	forced := f.invoke(`{"users":["ci-bot"],"force":true}`)
	if got, want := forced.Created, 1; got != want {
		t.Errorf("forced pass created %d keys, want %d", got, want)
	}
	if forced.Results[0].CurrentKeyID == first.Results[0].CurrentKeyID {
		t.Error("forced pass did not make a new key current")
	}
}

// TestHandlerErrors checks what fails an invocation and what does not.
func TestHandlerErrors(t *testing.T) {
	t.Run("bad event", func(t *testing.T) {
		f := newFixture(t, nil)
		if _, err := f.h.invoke(context.Background(), json.RawMessage(`{"users":"ci-bot"}`)); err == nil {
			t.Fatal("a malformed event did not fail the invocation")
		}
	})
	t.Run("unmanaged user asked for", func(t *testing.T) {
		f := newFixture(t, nil)
		_, err := f.h.invoke(context.Background(), json.RawMessage(`{"users":["root-admin"]}`))
		if err == nil || !strings.Contains(err.Error(), "root-admin") {
			t.Fatalf("err = %v, want the pass to fail naming the user", err)
		}
		if !strings.Contains(f.out.String(), `"msg":"pass failed"`) {
			t.Error("the failure is not logged")
		}
	})
	t.Run("bad config", func(t *testing.T) {
		_, err := newHandler(context.Background(), options{LookupEnv: env(map[string]string{"KEYROT_ROTATE_EVERY": "2m"}), Stdout: &testkit.Buffer{}})
		if err == nil || !strings.Contains(err.Error(), "rotate_every") {
			t.Fatalf("err = %v, want a config error naming rotate_every", err)
		}
	})
}

// TestPassContext checks that a pass stops starting steps a margin before
// the function's deadline, leaving at least half the time left.
func TestPassContext(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &handler{margin: 10 * time.Second, now: func() time.Time { return now }}
	tests := []struct {
		name     string
		left     time.Duration
		wantLeft time.Duration
	}{
		{"long timeout keeps the margin", 4 * time.Minute, 4*time.Minute - 10*time.Second},
		{"short timeout keeps half", 12 * time.Second, 6 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithDeadline(context.Background(), now.Add(tt.left))
			defer cancel()
			pass, cancelPass := h.passContext(ctx)
			defer cancelPass()
			d, ok := pass.Deadline()
			if !ok {
				t.Fatal("pass has no deadline")
			}
			if got, want := d.Sub(now), tt.wantLeft; got != want {
				t.Errorf("pass deadline in %s, want %s", got, want)
			}
		})
	}
}

// TestHandlerErrorsRedacted: the error the function returns (Lambda shows
// it to the invoker and logs it) and its log go through the redaction:
// here a secret pasted as a user name.
func TestHandlerErrorsRedacted(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	f := newFixture(t, nil)
	_, err := f.h.invoke(context.Background(), json.RawMessage(`{"users":["`+secret+`"]}`))
	if err == nil {
		t.Fatal("a pass for a user not managed succeeded")
	}
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("returned error: %v", err)
	}
	if out := f.out.String(); strings.Contains(out, secret) {
		t.Errorf("the secret is in the function's output:\n%s", out)
	}
}
