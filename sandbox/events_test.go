package sandbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

func TestEventBridgePutEvents(t *testing.T) {
	clock := sandboxtest.NewClock(smT0)
	srv := sandboxtest.Start(t, sandbox.Options{Clock: clock, Seed: 3})
	eb := eventbridge.NewFromConfig(sandboxtest.Config(t, srv))
	ctx := context.Background()
	at := smT0.Add(-time.Minute)

	out, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
		{Source: aws.String("keyrot"), DetailType: aws.String("Key Created"), Detail: aws.String(`{"kind":"key_created","user":"alice"}`), Time: aws.Time(at)},
		{Source: aws.String("keyrot"), DetailType: aws.String("Warning"), Detail: aws.String(`not json`)},
		{Source: aws.String("keyrot"), Detail: aws.String(`{}`)},
		{Source: aws.String("aws.iam"), DetailType: aws.String("X"), Detail: aws.String(`{}`)},
		{Source: aws.String("keyrot"), DetailType: aws.String("Key Deleted"), Detail: aws.String(`{}`),
			EventBusName: aws.String("arn:aws:events:us-east-1:123456789012:event-bus/ops")},
	}})
	smMust(t, err, "put events")
	if got, want := out.FailedEntryCount, int32(3); got != want {
		t.Fatalf("FailedEntryCount = %d, want %d", got, want)
	}
	codes := make([]string, len(out.Entries))
	for i, e := range out.Entries {
		codes[i] = aws.ToString(e.ErrorCode)
		if (codes[i] == "") == (aws.ToString(e.EventId) == "") {
			t.Errorf("entry %d: EventId %q and ErrorCode %q: want exactly one", i, aws.ToString(e.EventId), codes[i])
		}
	}
	if got, want := strings.Join(codes, ","), ",MalformedDetail,InvalidArgument,NotAuthorizedForSourceException,"; got != want {
		t.Errorf("entry error codes = %q, want %q", got, want)
	}

	got := srv.BusEvents()
	if len(got) != 2 {
		t.Fatalf("outbox has %d events, want 2: %+v", len(got), got)
	}
	if e := got[0]; e.EventBus != "default" || e.Source != "keyrot" || e.DetailType != "Key Created" ||
		!e.Time.Equal(at) || e.EventID != aws.ToString(out.Entries[0].EventId) || !strings.Contains(string(e.Detail), `"user":"alice"`) {
		t.Errorf("first event = %+v", e)
	}
	if got[1].EventBus != "ops" || !got[1].Time.Equal(smT0) {
		t.Errorf("second event: bus %q time %v, want ops at the sandbox's now %v", got[1].EventBus, got[1].Time, smT0)
	}

	t.Run("the outbox is served as JSON", func(t *testing.T) {
		resp, err := http.Get(srv.URL() + "/_sandbox/events")
		smMust(t, err, "get outbox")
		defer resp.Body.Close()
		var served []sandbox.BusEvent
		if err := json.NewDecoder(resp.Body).Decode(&served); err != nil {
			t.Fatal(err)
		}
		if len(served) != 2 || served[0].DetailType != "Key Created" {
			t.Errorf("served %+v", served)
		}
		req, _ := http.NewRequest(http.MethodDelete, srv.URL()+"/_sandbox/events", nil)
		resp2, err := http.DefaultClient.Do(req)
		smMust(t, err, "clear outbox")
		resp2.Body.Close()
		if n := len(srv.BusEvents()); n != 0 {
			t.Errorf("outbox has %d events after DELETE", n)
		}
	})

	t.Run("a request of more than 10 entries is refused", func(t *testing.T) {
		entries := make([]ebtypes.PutEventsRequestEntry, 11)
		for i := range entries {
			entries[i] = ebtypes.PutEventsRequestEntry{Source: aws.String("keyrot"), DetailType: aws.String("X"), Detail: aws.String("{}")}
		}
		_, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: entries})
		smWantCode(t, err, "ValidationException")
	})

	t.Run("faults apply", func(t *testing.T) {
		srv.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Service: "events", Operation: "PutEvents", Kind: sandbox.FaultThrottle, Count: 5}}})
		defer srv.SetFaults(sandbox.Faults{})
		_, err := eb.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
			{Source: aws.String("keyrot"), DetailType: aws.String("X"), Detail: aws.String("{}")}}})
		smWantCode(t, err, "ThrottlingException")
		if len(srv.FaultCounts()) == 0 {
			t.Errorf("no fault counted")
		}
	})

	t.Run("IAM users may not put events", func(t *testing.T) {
		smEnv := &smEnv{srv: srv, clock: clock, cfg: sandboxtest.Config(t, srv)}
		_, cfg := smCreateUser(t, smEnv, "mallory")
		_, err := eventbridge.NewFromConfig(cfg).PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
			{Source: aws.String("keyrot"), DetailType: aws.String("X"), Detail: aws.String("{}")}}})
		smWantCode(t, err, "AccessDeniedException")
	})
}
