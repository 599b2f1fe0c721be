package secretsmanager_test

import (
	"context"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
)

func TestDeliveryRecordsRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	if err := s.Init(ctx, user); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2026, 1, 1, 9, 30, 0, 0, time.UTC)
	records := map[string]keyrot.Delivery{
		"github/acme/app":             {KeyID: "AKIAAAAAAAAAAAAAAAA1"},
		"github.example.com/acme/app": {KeyID: "AKIAAAAAAAAAAAAAAAA1", FailingSince: since},
		"gitlab/group/acme":           {FailingSince: since}, // failing before its first delivery
	}
	for target, d := range records {
		if err := s.MarkDelivery(ctx, "ci-bot", target, d); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.Load(ctx, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range records {
		if got := st.Delivered[target]; got.KeyID != want.KeyID || !got.FailingSince.Equal(want.FailingSince) {
			t.Errorf("%s: Load = %+v, want %+v", target, got, want)
		}
	}
	// Recovery drops the failure; the bulk listing reads the same tags.
	if err := s.MarkDelivery(ctx, "ci-bot", "gitlab/group/acme", keyrot.Delivery{KeyID: "AKIAAAAAAAAAAAAAAAA2"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := all["ci-bot"].Delivered["gitlab/group/acme"]; got.KeyID != "AKIAAAAAAAAAAAAAAAA2" || !got.FailingSince.IsZero() {
		t.Errorf("Records = %+v, want confirmed, not failing", got)
	}
}
