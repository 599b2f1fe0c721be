package eventbridge_test

import (
	"context"
	"os"
	"testing"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/eventbridge"
	"github.com/keyrot/keyrot/internal/testkit/mototest"
)

var moto mototest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	moto.Close()
	os.Exit(code)
}

// TestPutEventsOnMoto puts the same entry on moto_server, a second,
// independent emulator, through the same client: it accepts what the
// sandbox accepts.
func TestPutEventsOnMoto(t *testing.T) {
	srv := moto.Get(t)
	e := keyrot.Event{Kind: keyrot.EventKeyCreated, User: srv.Namespace() + "ci-bot", KeyID: "AKIAEXAMPLE000000001", Time: t0, Summary: "new key"}
	if err := eventbridge.New(client(srv.Config()), "").Deliver(context.Background(), delivery(e)); err != nil {
		t.Fatalf("PutEvents on moto: %v", err)
	}
}
