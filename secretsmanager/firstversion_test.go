package secretsmanager_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/keyrot/keyrot"
)

// On AWS, the first version written to a secret is AWSCURRENT whatever
// VersionStages says, so a ring member's first pending key is also that
// member's AWSCURRENT until it is promoted. Readers follow the pointer on
// member 0, never a member's AWSCURRENT alone: none of them may hand out
// an unverified pending key as the current one.
func TestPendingKeyOnANewMemberIsNotServed(t *testing.T) {
	ctx := context.Background()
	s, client := newStore(t)
	stageOf := func(name, stage string) string {
		t.Helper()
		out, err := client.GetSecretValue(ctx, &awssm.GetSecretValueInput{SecretId: aws.String(name), VersionStage: aws.String(stage)})
		if err != nil {
			return "none"
		}
		return aws.ToString(out.VersionId)
	}
	store := func(gen, member int, id string) keyrot.StoredKey {
		t.Helper()
		intent := keyrot.Intent{Generation: gen, Member: member, At: time.Date(2026, 1, 1, 0, gen, 0, 0, time.UTC)}
		if err := s.BeginCreate(ctx, user, intent); err != nil {
			t.Fatal(err)
		}
		stored, err := s.StorePending(ctx, intent, creds(id, gen))
		if err != nil {
			t.Fatal(err)
		}
		return stored
	}
	served := func(want string) {
		t.Helper()
		cur, err := s.Current(ctx, "ci-bot")
		switch {
		case want == "" && !errors.Is(err, keyrot.ErrSecretNotFound):
			t.Fatalf("Current = %v, %v; want no current key yet", cur.AccessKeyID, err)
		case want != "" && (err != nil || cur.AccessKeyID != want):
			t.Fatalf("Current = %v, %v; want %s", cur.AccessKeyID, err, want)
		}
		ptrs, err := s.Pointers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, failed := s.ReadCurrent(ctx, ptrs)
		if len(failed) != 0 {
			t.Fatalf("ReadCurrent failed: %v", failed)
		}
		var ids []string
		for _, c := range all {
			ids = append(ids, c.AccessKeyID)
		}
		if (want == "" && len(ids) != 0) || (want != "" && (len(ids) != 1 || ids[0] != want)) {
			t.Fatalf("Pointers+ReadCurrent = %v, want [%s]", ids, want)
		}
		st, err := s.Load(ctx, "ci-bot")
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if st.Current != nil {
			got = st.Current.KeyID
		}
		if got != want {
			t.Fatalf("Load's current = %q, want %q", got, want)
		}
	}

	// The very first key, on member 0 (which has no version yet).
	first := store(1, 0, "AKIAAAAAAAAAAAAAAAA1")
	if got := stageOf(s.SecretName("ci-bot", 0), "AWSCURRENT"); got != first.VersionID {
		t.Fatalf("member 0 AWSCURRENT = %s, want the first version %s (AWS's first-version rule)", got, first.VersionID)
	}
	served("") // stored, not verified: nobody serves it yet
	if st, err := s.Load(ctx, "ci-bot"); err != nil || st.Pending == nil || st.Pending.KeyID != first.KeyID {
		t.Fatalf("Load's pending = %+v, %v", st.Pending, err)
	}
	if err := s.Promote(ctx, "ci-bot", first, "", first.CreateDate, keyrot.DefaultPolicy().Timings()); err != nil {
		t.Fatal(err)
	}
	served(first.KeyID)
	if got := stageOf(s.SecretName("ci-bot", 0), "AWSPENDING"); got != "none" {
		t.Fatalf("member 0 keeps AWSPENDING on %s after promotion", got)
	}

	// The second key goes to member 1, new: it is that member's AWSCURRENT
	// at once, but the pointer still names the first key.
	second := store(2, 1, "AKIAAAAAAAAAAAAAAAA2")
	if got := stageOf(s.SecretName("ci-bot", 1), "AWSCURRENT"); got != second.VersionID {
		t.Fatalf("member 1 AWSCURRENT = %s, want its first version %s", got, second.VersionID)
	}
	served(first.KeyID)
	if st, err := s.Load(ctx, "ci-bot"); err != nil || st.Pending == nil || st.Pending.KeyID != second.KeyID {
		t.Fatalf("Load's pending = %+v, %v", st.Pending, err)
	}
	// Promotion finds AWSCURRENT already there and only moves the pointer.
	if err := s.Promote(ctx, "ci-bot", second, first.KeyID, second.CreateDate, keyrot.DefaultPolicy().Timings()); err != nil {
		t.Fatal(err)
	}
	served(second.KeyID)
	if got := stageOf(s.SecretName("ci-bot", 1), "AWSPENDING"); got != "none" {
		t.Fatalf("member 1 keeps AWSPENDING on %s after promotion", got)
	}
}
