package secretsmanager_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
	"github.com/keyrot/keyrot/secretsmanager"
)

func newStore(t *testing.T) (*secretsmanager.Store, *awssm.Client) {
	t.Helper()
	sb := sandboxtest.Start(t, sandbox.Options{})
	client := awssm.NewFromConfig(sandboxtest.Config(t, sb))
	return secretsmanager.New(client, secretsmanager.Config{}), client
}

var user = keyrot.User{Name: "ci-bot", ARN: "arn:aws:iam::123456789012:user/ci-bot"}

func creds(id string, gen int) keyrot.Credentials {
	return keyrot.Credentials{UserName: "ci-bot", AccessKeyID: id, SecretAccessKey: strings.Repeat("s", 39) + id[len(id)-1:], CreateDate: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Generation: gen}
}

func TestLoadOfANewUserIsEmpty(t *testing.T) {
	s, _ := newStore(t)
	st, err := s.Load(context.Background(), "ci-bot")
	if err != nil || st.Exists || st.Current != nil {
		t.Fatalf("Load = %+v, %v", st, err)
	}
	if _, err := s.Current(context.Background(), "ci-bot"); !errors.Is(err, keyrot.ErrSecretNotFound) {
		t.Fatalf("Current = %v, want ErrSecretNotFound", err)
	}
}

func TestRotationLifecycle(t *testing.T) {
	ctx := context.Background()
	s, client := newStore(t)
	for gen, id := range []string{"", "AKIAAAAAAAAAAAAAAAA1", "AKIAAAAAAAAAAAAAAAA2", "AKIAAAAAAAAAAAAAAAA3"} {
		if gen == 0 {
			continue
		}
		intent := keyrot.Intent{Generation: gen, Member: gen % 2, At: time.Date(2026, 1, 1, 0, gen, 0, 0, time.UTC)}
		if err := s.BeginCreate(ctx, user, intent); err != nil {
			t.Fatal(err)
		}
		st, err := s.Load(ctx, "ci-bot")
		if err != nil || st.Intent == nil || st.Intent.Generation != gen || st.Pending != nil {
			t.Fatalf("after intent: %+v, %v", st, err)
		}
		stored, err := s.StorePending(ctx, intent, creds(id, gen))
		if err != nil {
			t.Fatal(err)
		}
		// The same store again (a retry after a lost response) is fine...
		if _, err := s.StorePending(ctx, intent, creds(id, gen)); err != nil {
			t.Fatalf("idempotent store: %v", err)
		}
		// ...another key for the same generation is another keyrot's.
		if _, err := s.StorePending(ctx, intent, creds("AKIAZZZZZZZZZZZZZZZZ", gen)); !errors.Is(err, keyrot.ErrConflict) {
			t.Fatalf("conflicting store = %v, want ErrConflict", err)
		}
		st, err = s.Load(ctx, "ci-bot")
		if err != nil || st.Pending == nil || st.Pending.KeyID != id || st.Pending.Creds.SecretAccessKey == "" {
			t.Fatalf("after store: %+v, %v", st, err)
		}
		prev := ""
		if st.Current != nil {
			prev = st.Current.KeyID
		}
		since := intent.At.Add(10 * time.Second)
		if err := s.Promote(ctx, "ci-bot", stored, prev, since, keyrot.DefaultPolicy().Timings()); err != nil {
			t.Fatal(err)
		}
		if err := s.Promote(ctx, "ci-bot", stored, prev, since, keyrot.DefaultPolicy().Timings()); err != nil { // repeatable
			t.Fatalf("promote again: %v", err)
		}
		st, err = s.Load(ctx, "ci-bot")
		if err != nil || st.Current == nil || st.Current.KeyID != id || st.Intent != nil || st.Pending != nil || st.Generation != gen || !st.CurrentSince.Equal(since) || st.PreviousKeyID != prev {
			t.Fatalf("after promote: %+v, %v", st, err)
		}
		cur, err := s.Current(ctx, "ci-bot")
		if err != nil || cur.AccessKeyID != id {
			t.Fatalf("Current = %v, %v", cur, err)
		}
	}
	// Deactivation records survive in tags and are forgotten on delete.
	at := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if err := s.MarkInactive(ctx, "ci-bot", "AKIAAAAAAAAAAAAAAAA2", at); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load(ctx, "ci-bot")
	if !st.Inactive["AKIAAAAAAAAAAAAAAAA2"].Equal(at) {
		t.Fatalf("inactive = %v", st.Inactive)
	}
	if err := s.Forget(ctx, "ci-bot", "AKIAAAAAAAAAAAAAAAA2"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Load(ctx, "ci-bot"); len(st.Inactive) != 0 {
		t.Fatalf("inactive after forget = %v", st.Inactive)
	}
	// The listing the API cache polls sees the pointer to the current key
	// only, and the read returns that key.
	ptrs, err := s.Pointers(ctx)
	if err != nil || len(ptrs) != 1 || ptrs[0].KeyID != "AKIAAAAAAAAAAAAAAAA3" || ptrs[0].Generation != 3 || ptrs[0].Secret != "iam-key-rotation/ci-bot/1" {
		t.Fatalf("Pointers = %+v, %v", ptrs, err)
	}
	all, failed := s.ReadCurrent(ctx, ptrs)
	if len(failed) != 0 || len(all) != 1 || all[0].AccessKeyID != "AKIAAAAAAAAAAAAAAAA3" || !ptrs[0].Names(all[0]) {
		t.Fatalf("ReadCurrent = %v, %v", all, failed)
	}
	// Members hold the resource policy letting the user read its key.
	pol, err := client.GetResourcePolicy(ctx, &awssm.GetResourcePolicyInput{SecretId: aws.String("iam-key-rotation/ci-bot/1")})
	if err != nil || !strings.Contains(aws.ToString(pol.ResourcePolicy), user.ARN) {
		t.Fatalf("resource policy = %v, %v", aws.ToString(pol.ResourcePolicy), err)
	}
}

// TestReadCurrentReportsEachFailure: one user's unreadable member fails
// that user alone, a pointer caught mid-promotion with a ring of one reads
// the key it names from AWSPREVIOUS, and a throttled batch fails its users.
func TestReadCurrentReportsEachFailure(t *testing.T) {
	ctx := context.Background()
	sb := sandboxtest.Start(t, sandbox.Options{})
	client := awssm.NewFromConfig(sandboxtest.Config(t, sb))
	s := secretsmanager.New(client, secretsmanager.Config{})
	promote := func(name string, gen, member int, id string) keyrot.StoredKey {
		t.Helper()
		u := keyrot.User{Name: name}
		intent := keyrot.Intent{Generation: gen, Member: member, At: time.Date(2026, 1, 1, 0, gen, 0, 0, time.UTC)}
		if err := s.BeginCreate(ctx, u, intent); err != nil {
			t.Fatal(err)
		}
		c := creds(id, gen)
		c.UserName = name
		stored, err := s.StorePending(ctx, intent, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Promote(ctx, name, stored, "", intent.At, keyrot.DefaultPolicy().Timings()); err != nil {
			t.Fatal(err)
		}
		return stored
	}
	promote("alice", 1, 1, "AKIAALICEAAAAAAAAAA1")
	promote("bob", 1, 1, "AKIABOBAAAAAAAAAAAA1")
	promote("carol", 1, 0, "AKIACAROLAAAAAAAAAA1")
	// carol's ring of one is caught mid-promotion: AWSCURRENT moved to a
	// second key, the tags still name the first.
	next, err := s.StorePending(ctx, keyrot.Intent{Generation: 2}, keyrot.Credentials{UserName: "carol", AccessKeyID: "AKIACAROLAAAAAAAAAA2", SecretAccessKey: strings.Repeat("c", 40)})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := client.DescribeSecret(ctx, &awssm.DescribeSecretInput{SecretId: aws.String("iam-key-rotation/carol")})
	if err != nil {
		t.Fatal(err)
	}
	var cur string
	for v, stages := range desc.VersionIdsToStages {
		for _, st := range stages {
			if st == "AWSCURRENT" {
				cur = v
			}
		}
	}
	if _, err := client.UpdateSecretVersionStage(ctx, &awssm.UpdateSecretVersionStageInput{SecretId: aws.String("iam-key-rotation/carol"),
		VersionStage: aws.String("AWSCURRENT"), MoveToVersionId: aws.String(next.VersionID), RemoveFromVersionId: aws.String(cur)}); err != nil {
		t.Fatal(err)
	}
	// bob's member is scheduled for deletion: BatchGetSecretValue lists it
	// under Errors.
	if _, err := client.DeleteSecret(ctx, &awssm.DeleteSecretInput{SecretId: aws.String("iam-key-rotation/bob/1")}); err != nil {
		t.Fatal(err)
	}

	ptrs, err := s.Pointers(ctx)
	if err != nil || len(ptrs) != 3 {
		t.Fatalf("Pointers = %+v, %v", ptrs, err)
	}
	got, failed := s.ReadCurrent(ctx, ptrs)
	ids := map[string]string{}
	for _, c := range got {
		ids[c.UserName] = c.AccessKeyID
	}
	if ids["alice"] != "AKIAALICEAAAAAAAAAA1" || ids["carol"] != "AKIACAROLAAAAAAAAAA1" || len(ids) != 2 {
		t.Errorf("read %v, want alice's key and carol's first key", ids)
	}
	if err := failed["bob"]; err == nil || len(failed) != 1 || !strings.Contains(err.Error(), "iam-key-rotation/bob/1") {
		t.Errorf("failed = %v, want bob's member named", failed)
	}

	// A batch that fails whole (throttled past the SDK's retries) fails
	// each of its users; the error names no secret value.
	sb.SetFaults(sandbox.Faults{Rules: []sandbox.FaultRule{{Operation: "BatchGetSecretValue", Kind: sandbox.FaultThrottle, Count: 3}}})
	got, failed = s.ReadCurrent(ctx, ptrs)
	if len(got) != 0 || len(failed) != 3 {
		t.Fatalf("throttled: read %v, failed %v", got, failed)
	}
	for _, err := range failed {
		if strings.Contains(err.Error(), strings.Repeat("s", 39)) {
			t.Fatalf("error %q holds a secret", err)
		}
	}
}

func TestRefusesASecretItDoesNotOwn(t *testing.T) {
	ctx := context.Background()
	s, client := newStore(t)
	if _, err := client.CreateSecret(ctx, &awssm.CreateSecretInput{Name: aws.String("iam-key-rotation/ci-bot"), SecretString: aws.String("hunter2")}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load(ctx, "ci-bot")
	if err == nil || !strings.Contains(err.Error(), "not keyrot's secret") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Load = %v", err)
	}
	if err := s.BeginCreate(ctx, user, keyrot.Intent{Generation: 1, At: time.Now()}); err == nil {
		t.Fatal("BeginCreate took over a secret keyrot does not own")
	}
}

func TestScheduledForDeletionIsReported(t *testing.T) {
	ctx := context.Background()
	s, client := newStore(t)
	if err := s.BeginCreate(ctx, user, keyrot.Intent{Generation: 1, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DeleteSecret(ctx, &awssm.DeleteSecretInput{SecretId: aws.String("iam-key-rotation/ci-bot")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "ci-bot"); err == nil || !strings.Contains(err.Error(), "scheduled for deletion") {
		t.Fatalf("Load = %v", err)
	}
}

func TestTokenIsStableAndValid(t *testing.T) {
	a, b := secretsmanager.Token("ci-bot", 7), secretsmanager.Token("ci-bot", 7)
	if a != b || len(a) < 32 || len(a) > 64 {
		t.Fatalf("Token = %q, %q", a, b)
	}
	if secretsmanager.Token("ci-bot", 8) == a || secretsmanager.Token("other", 7) == a {
		t.Fatal("tokens collide")
	}
}

// TestValueAndPutValue: a secret outside the key rings (api.keys_secret) is
// created by the first PutValue, replaced by the next, read by Value; a
// missing one reads as keyrot.ErrSecretNotFound, and no error carries the
// value.
func TestValueAndPutValue(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	const name, v1, v2 = "keyrot/api-keys", `{"keys":[]}`, `[{"name":"ci","hash":"sha256:00"}]`
	if _, err := s.Value(ctx, name); !errors.Is(err, keyrot.ErrSecretNotFound) {
		t.Fatalf("Value of a missing secret = %v, want ErrSecretNotFound", err)
	}
	for _, v := range []string{v1, v2} {
		if err := s.PutValue(ctx, name, v, "keyrot REST API keys"); err != nil {
			t.Fatalf("PutValue: %v", err)
		}
		if got, err := s.Value(ctx, name); err != nil || got != v {
			t.Fatalf("Value = %q, %v; want %q", got, err, v)
		}
	}
	desc, err := client.DescribeSecret(ctx, &awssm.DescribeSecretInput{SecretId: aws.String(name)})
	if err != nil || aws.ToString(desc.Description) != "keyrot REST API keys" {
		t.Fatalf("describe: %v, %v", desc, err)
	}
	if err := s.PutValue(ctx, "bad name with spaces", v2, ""); err == nil || strings.Contains(err.Error(), v2) {
		t.Fatalf("PutValue to a bad name = %v: want an error without the value", err)
	}
}
