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
	// The listing the API cache refreshes from sees the current key only.
	all, err := s.ListCurrent(ctx)
	if err != nil || len(all) != 1 || all[0].AccessKeyID != "AKIAAAAAAAAAAAAAAAA3" {
		t.Fatalf("ListCurrent = %v, %v", all, err)
	}
	// Members hold the resource policy letting the user read its key.
	pol, err := client.GetResourcePolicy(ctx, &awssm.GetResourcePolicyInput{SecretId: aws.String("iam-key-rotation/ci-bot/1")})
	if err != nil || !strings.Contains(aws.ToString(pol.ResourcePolicy), user.ARN) {
		t.Fatalf("resource policy = %v, %v", aws.ToString(pol.ResourcePolicy), err)
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
