package app_test

import (
	"flag"
	"os"
	"testing"
	"time"

	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyrot/keyrot/internal/testkit/mototest"
	"github.com/keyrot/keyrot/mock"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// moto is one moto_server for this test binary, started on first use.
var moto mototest.Shared

func TestMain(m *testing.M) {
	sandboxtest.ServeIfChild() // BenchmarkFleetSteadyPass's sandbox process
	flag.Parse()
	// The moto scenarios spend their time waiting on the wall clock, not
	// the CPU: let them all wait at once unless -parallel says otherwise.
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "32")
	}
	code := m.Run()
	moto.Close()
	os.Exit(code)
}

// newMotoHarness is the engine's harness on moto_server: a second,
// independent emulator, which checks every request's signature. moto runs
// on the wall clock, so the engine does too, with its minute shortened to
// two seconds (rotate every 10s, deactivate after 4s, delete after 2s):
// with a one-second unit a loaded 2-core machine passed late enough to
// fail the timing checks now and then.
func newMotoHarness(t *testing.T) *harness {
	srv := moto.Get(t)
	ns := srv.Namespace()
	cfg := srv.Config()
	return &harness{t: t, aws: cfg, iam: awsiam.NewFromConfig(cfg), events: &mock.Notifier{}, foreign: map[string]bool{},
		unit: 2 * time.Second, ns: ns}
}

// TestEngineOnMoto runs the engine's integration scenarios against
// moto_server as a second backend. The sandbox-only scenarios (fault
// injection, the driven clock's 48 hours, IAM pagination) are listed with
// the reason moto cannot serve them; see sandbox/DIVERGENCES.md.
func TestEngineOnMoto(t *testing.T) {
	moto.Get(t) // one skip line when moto_server is absent
	scenarios := []struct {
		name string
		run  func(t *testing.T, h *harness)
		skip string
	}{
		{name: "full cycle", run: fullCycle},
		{name: "restart mid-cycle", run: restartMidCycle},
		{name: "two engines at once", skip: "moto accepts a second PutSecretValue with the same ClientRequestToken and another value, " +
			"so two engines' collision on a generation goes unseen and leaves its labels torn (seen: HTTP 500 from UpdateSecretVersionStage); DIVERGENCES.md D7"},
		{name: "dry run", run: dryRun},
		{name: "exempt and missing users", run: exemptAndMissing},
		{name: "user reads own secret", skip: "moto does not evaluate Secrets Manager resource policies (DIVERGENCES.md D3)"},
		{name: "faults inside steps", skip: "moto has no fault injection; the sandbox's fault rules drive this scenario"},
		{name: "throttling and server errors", skip: "moto has no fault injection; the sandbox's fault rules drive this scenario"},
		{name: "two days of seed cadence", skip: "48 hours need the sandbox's driven clock; moto runs on the wall clock"},
		{name: "users by tag paginated", skip: "moto ignores MaxItems on IAM listings, so there are no pages to follow (DIVERGENCES.md D6)"},
	}
	for _, point := range crashPoints {
		scenarios = append(scenarios, struct {
			name string
			run  func(t *testing.T, h *harness)
			skip string
		}{name: "crash " + point, run: func(t *testing.T, h *harness) { crashAt(t, h, point) }})
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.skip != "" {
				t.Skip(sc.skip)
			}
			t.Parallel() // each waits on the wall clock most of the time
			sc.run(t, newMotoHarness(t))
		})
	}
}
