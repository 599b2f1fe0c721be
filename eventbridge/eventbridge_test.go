package eventbridge_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awseb "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/eventbridge"
	"github.com/keyrot/keyrot/notify"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func client(cfg aws.Config) *awseb.Client {
	return awseb.NewFromConfig(cfg, func(o *awseb.Options) { o.RetryMaxAttempts = 1 })
}

func delivery(e keyrot.Event) notify.Delivery {
	return notify.Delivery{Event: e, Payload: notify.NewPayload(e), Attempt: 1}
}

func TestPutEventsOnTheSandbox(t *testing.T) {
	srv := sandboxtest.Start(t, sandbox.Options{Clock: sandboxtest.NewClock(t0)})
	ctx := context.Background()
	e := keyrot.Event{Kind: keyrot.EventKeyDeactivated, User: "alice", KeyID: "AKIAEXAMPLE000000001", Time: t0.Add(-time.Second),
		Summary: "access key AKIAEXAMPLE000000001 of alice is now inactive", Next: "key AKIAEXAMPLE000000001 will be deleted", NextAt: t0.Add(24 * time.Hour)}

	if err := eventbridge.New(client(sandboxtest.Config(t, srv)), "").Deliver(ctx, delivery(e)); err != nil {
		t.Fatal(err)
	}
	got := srv.BusEvents()
	if len(got) != 1 {
		t.Fatalf("bus got %d events", len(got))
	}
	be := got[0]
	if be.Source != "keyrot" || be.DetailType != "Key Deactivated" || be.EventBus != "default" || !be.Time.Equal(e.Time) {
		t.Errorf("event = %+v", be)
	}
	var detail notify.Payload
	if err := json.Unmarshal(be.Detail, &detail); err != nil {
		t.Fatal(err)
	}
	if want := notify.NewPayload(e); detail != want {
		t.Errorf("detail = %+v, want %+v", detail, want)
	}

	t.Run("throttling is retried", func(t *testing.T) {
		srv.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Service: "events", Kind: sandbox.FaultThrottle, Count: 1}}})
		err := eventbridge.New(client(sandboxtest.Config(t, srv)), "ops").Deliver(ctx, delivery(e))
		if err == nil || notify.IsPermanent(err) {
			t.Errorf("err = %v, want a retryable error", err)
		}
	})
	t.Run("a 5xx is retried", func(t *testing.T) {
		srv.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Service: "events", Kind: sandbox.Fault5xx, Count: 1}}})
		err := eventbridge.New(client(sandboxtest.Config(t, srv)), "ops").Deliver(ctx, delivery(e))
		if err == nil || notify.IsPermanent(err) {
			t.Errorf("err = %v, want a retryable error", err)
		}
	})
	t.Run("a bus of another account fails the entry for good", func(t *testing.T) {
		err := eventbridge.New(client(sandboxtest.Config(t, srv)), "arn:aws:events:us-east-1:999999999999:event-bus/x").Deliver(ctx, delivery(e))
		if !notify.IsPermanent(err) {
			t.Errorf("err = %v, want permanent", err)
		}
	})
	t.Run("access denied is permanent", func(t *testing.T) {
		ic := iam.NewFromConfig(sandboxtest.Config(t, srv))
		if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("mallory")}); err != nil {
			t.Fatal(err)
		}
		k, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("mallory")})
		if err != nil {
			t.Fatal(err)
		}
		cfg := sandboxtest.UserConfig(t, srv, aws.ToString(k.AccessKey.AccessKeyId), aws.ToString(k.AccessKey.SecretAccessKey))
		err = eventbridge.New(client(cfg), "").Deliver(ctx, delivery(e))
		if !notify.IsPermanent(err) {
			t.Errorf("err = %v, want permanent", err)
		}
	})
	if n := len(srv.BusEvents()); n != 1 {
		t.Errorf("bus has %d events after the failures, want 1", n)
	}
}

func TestDetailType(t *testing.T) {
	for kind, want := range map[keyrot.EventKind]string{
		keyrot.EventKeyCreated: "Key Created", keyrot.EventRotationRecovered: "Rotation Recovered", keyrot.EventWarning: "Warning",
	} {
		if got := eventbridge.DetailType(kind); got != want {
			t.Errorf("DetailType(%s) = %q, want %q", kind, got, want)
		}
	}
}
