package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/sandbox"
)

// With bulk observation, a storm larger than an invocation can take (every
// tagged user due at once, behind a real per-call latency) is cut short
// before the function's deadline: the invocation returns in time, with the
// rest deferred, and the next invocations carry it on until every user has
// its one key. The emails the storm queues (more than the send rate lets
// out) are flushed only until shortly before the deadline.
func TestHandlerStormCarriesOverBeforeTheDeadline(t *testing.T) {
	const users = 40
	f := newFixture(t, map[string]string{
		"KEYROT_USERS": "", "KEYROT_USER_TAG": "keyrot", "KEYROT_BULK_OBSERVE": "true", "KEYROT_CONCURRENCY": "4",
	})
	f.h.margin = 3 * time.Second
	ctx := context.Background()
	for i := range users {
		if _, err := f.iam.CreateUser(ctx, &awsiam.CreateUserInput{UserName: aws.String(fmt.Sprintf("storm-%02d", i)),
			Tags: []iamtypes.Tag{{Key: aws.String("keyrot"), Value: aws.String("on")}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A rotation is about ten calls: at 100 ms each and four at a time,
	// 40 users take about 10 s, beyond a pass of 3 s (a 6 s timeout less
	// the margin, which leaves a step in flight time to end).
	f.sb.SetFaults(sandbox.Faults{Latency: 100 * time.Millisecond, PropagationDelay: 9 * time.Second})

	invoke := func(timeout time.Duration) fleet.PassReport {
		t.Helper()
		deadline := time.Now().Add(timeout)
		ictx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{AwsRequestID: "req"})
		res, err := f.h.invoke(ictx, json.RawMessage(`{}`))
		if err != nil {
			t.Fatalf("invoke: %v", err)
		}
		if late := time.Since(deadline); late >= 0 {
			t.Fatalf("the invocation returned %s after its deadline: %+v", late, res)
		}
		if f := res.Failures(); len(f) > 0 {
			t.Fatalf("failures: %+v", f)
		}
		return res
	}
	created := 0
	for i := range 2 {
		res := invoke(6 * time.Second)
		created += res.Created
		t.Logf("invocation %d: created %d, deferred %d, stopped %t, %d ms", i+1, res.Created, res.Deferred, res.Stopped, res.DurationMs)
		if !res.Stopped || res.Deferred == 0 || res.Deferred != users-created {
			t.Fatalf("invocation %d of a storm over %d users, %d created so far: created %d, deferred %d, stopped %t; want the rest deferred",
				i+1, users, created, res.Created, res.Deferred, res.Stopped)
		}
		f.clock.Advance(time.Second)
	}
	if created == 0 {
		t.Fatal("no rotation in two invocations")
	}

	// Without the latency, the next invocations finish the storm (its
	// emails, at one a second, are not all out when they return).
	f.sb.SetFaults(sandbox.Faults{PropagationDelay: 9 * time.Second})
	for i := 0; created < users; i++ {
		if i == 10 {
			t.Fatalf("%d of %d users rotated after 10 more invocations", created, users)
		}
		res := invoke(6 * time.Second)
		created += res.Created
		if res.Deferred != users-created {
			t.Fatalf("%d created so far: created %d, deferred %d; want the rest deferred", created, res.Created, res.Deferred)
		}
		f.clock.Advance(time.Second)
	}
	for i := range users {
		name := fmt.Sprintf("storm-%02d", i)
		out, err := f.iam.ListAccessKeys(ctx, &awsiam.ListAccessKeysInput{UserName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.AccessKeyMetadata) != 1 {
			t.Errorf("%s has %d keys, want 1", name, len(out.AccessKeyMetadata))
		}
	}
}
