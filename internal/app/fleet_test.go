package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/sandbox"
)

// fleetConfig is a production-like configuration over every user tagged
// keyrot, observed in bulk.
func (h *harness) fleetConfig() config.Config {
	cfg := h.config()
	cfg.Users.Tag = "keyrot"
	r := &cfg.Rotation
	r.RotateEvery, r.DeactivateAfter, r.DeleteAfter = config.Duration(90*24*time.Hour), config.Duration(7*24*time.Hour), config.Duration(7*24*time.Hour)
	r.BulkObserve, r.Concurrency = true, 32
	return cfg
}

// createTagged creates n users tagged keyrot, in parallel.
func (h *harness) createTagged(prefix string, n int) []string {
	h.t.Helper()
	names := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := range n {
		names[i] = fmt.Sprintf("%s%04d", prefix, i)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := h.iam.CreateUser(context.Background(), &awsiam.CreateUserInput{UserName: aws.String(names[i]),
				Tags: []iamtypes.Tag{{Key: aws.String("keyrot"), Value: aws.String("on")}}})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatalf("create user: %v", err)
	}
	return names
}

// calls reads the sandbox's call counter over HTTP, as bench/fleet.sh does,
// and resets it.
func (h *harness) calls() (iamCalls, smCalls int64, all map[string]int64) {
	h.t.Helper()
	resp, err := http.Get(h.sb.URL() + "/_sandbox/calls")
	if err != nil {
		h.t.Fatalf("GET /_sandbox/calls: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		h.t.Fatalf("decode calls: %v", err)
	}
	for op, n := range all {
		switch {
		case strings.HasPrefix(op, "iam:"):
			iamCalls += n
		case strings.HasPrefix(op, "secretsmanager:"):
			smCalls += n
		}
	}
	req, _ := http.NewRequest(http.MethodDelete, h.sb.URL()+"/_sandbox/calls", nil)
	del, err := http.DefaultClient.Do(req)
	if err != nil || del.StatusCode != http.StatusNoContent {
		h.t.Fatalf("DELETE /_sandbox/calls: %v %v", del, err)
	}
	del.Body.Close()
	return iamCalls, smCalls, all
}

// A steady pass over 1,000 tagged users, nothing due, costs a handful of
// bulk calls: in a warm process (keys known from its last observations) and
// in a cold one (a new Lambda environment: keys matched from the
// credential report against the records in the secrets' tags).
func TestFleetSteadyPassCost(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 users")
	}
	h := newHarness(t, sandbox.Faults{})
	users := h.createTagged("fleet-", 1000)
	cfg := h.fleetConfig()
	warm := h.engine(cfg, nil)
	sum := h.pass(warm, keyrot.RunOptions{})
	if sum.Users != len(users) || sum.Created != len(users) {
		t.Fatalf("first pass: %d users, %d created; want %d each", sum.Users, sum.Created, len(users))
	}

	// Four hours on, the report keyrot asked for then has expired: it asks
	// for another and, meanwhile, trusts its own last observations.
	h.clock.Advance(4*time.Hour + time.Minute)
	h.calls()
	sum = h.pass(warm, keyrot.RunOptions{})
	iamN, smN, all := h.calls()
	t.Logf("warm steady pass: %d IAM, %d Secrets Manager calls: %v", iamN, smN, all)
	if sum.Created+sum.Deactivated+sum.Deleted != 0 || sum.Bulk < len(users)-5 {
		t.Fatalf("warm pass: %+v", sum)
	}
	if iamN > 50 || smN > 30 {
		t.Fatalf("warm steady pass over %d users: %d IAM and %d Secrets Manager calls, want at most 50 and 30: %v", len(users), iamN, smN, all)
	}

	h.clock.Advance(time.Minute)
	cold := h.engine(cfg, nil)
	h.calls()
	sum = h.pass(cold, keyrot.RunOptions{})
	iamN, smN, all = h.calls()
	t.Logf("cold steady pass: %d IAM, %d Secrets Manager calls: %v", iamN, smN, all)
	if sum.Created+sum.Deactivated+sum.Deleted != 0 || sum.Bulk < len(users)-5 {
		t.Fatalf("cold pass: %+v", sum)
	}
	if iamN > 50 || smN > 30 {
		t.Fatalf("cold steady pass over %d users: %d IAM and %d Secrets Manager calls, want at most 50 and 30: %v", len(users), iamN, smN, all)
	}
	if all["iam:ListAccessKeys"] > 5 || all["secretsmanager:GetSecretValue"] > 10 {
		t.Fatalf("per-user calls in a steady pass: %v", all)
	}
}

// fleetBound is how soon a change made by hand is noticed with bulk
// observation (docs/operations.md): the credential report's four hours,
// plus a pass to ask for the next one and a pass to read it.
const fleetBound = 4*time.Hour + 2*time.Minute

// A key created by hand and a key deleted by hand are noticed and handled
// within fleetBound, in a process that observes in bulk every minute, on
// both a warm engine and a new one each pass (the Lambda's cold starts).
func TestFleetNoticesHandMadeChanges(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		t.Run(fmt.Sprintf("fresh_engine=%t", fresh), func(t *testing.T) {
			h := newHarness(t, sandbox.Faults{})
			users := h.createTagged("hand-", 20)
			cfg := h.fleetConfig()
			a := h.engine(cfg, nil)
			h.pass(a, keyrot.RunOptions{})
			// Settle: passes every minute until a report newer than every
			// rotation is in hand and no user needs a full observation.
			for range 4*60 + 5 {
				h.clock.Advance(time.Minute)
				h.pass(a, keyrot.RunOptions{})
			}

			created, deleted := users[3], users[7]
			out, err := h.iam.CreateAccessKey(context.Background(), &awsiam.CreateAccessKeyInput{UserName: aws.String(created)})
			if err != nil {
				t.Fatal(err)
			}
			handKey := aws.ToString(out.AccessKey.AccessKeyId)
			gone := aws.ToString(h.keys(deleted)[0].AccessKeyId)
			if _, err := h.iam.DeleteAccessKey(context.Background(), &awsiam.DeleteAccessKeyInput{UserName: aws.String(deleted), AccessKeyId: aws.String(gone)}); err != nil {
				t.Fatal(err)
			}
			changed := h.now()
			h.events.Reset()
			var sawKey, replaced time.Time
			for h.now().Sub(changed) <= fleetBound && (sawKey.IsZero() || replaced.IsZero()) {
				h.clock.Advance(time.Minute)
				if fresh {
					a = h.engine(cfg, nil)
				}
				h.pass(a, keyrot.RunOptions{})
				for _, e := range h.events.Events() {
					if e.User == created && e.Warning == keyrot.WarnUnmanagedKey && e.KeyID == handKey && sawKey.IsZero() {
						sawKey = h.now()
					}
					if e.User == deleted && e.Kind == keyrot.EventKeyCreated && replaced.IsZero() {
						replaced = h.now()
					}
				}
			}
			if sawKey.IsZero() || replaced.IsZero() {
				t.Fatalf("within %s of the change: hand-made key of %s noticed at %v, %s's deleted key replaced at %v", fleetBound, created, sawKey, deleted, replaced)
			}
			t.Logf("hand-made key noticed after %s, deleted key replaced after %s", sawKey.Sub(changed), replaced.Sub(changed))
			if keys := h.keys(deleted); len(keys) != 1 || aws.ToString(keys[0].AccessKeyId) == gone {
				t.Fatalf("%s's keys after the replacement: %v", deleted, keys)
			}
			h.checkInvariants(a, deleted)
		})
	}
}
