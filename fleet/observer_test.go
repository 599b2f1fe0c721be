package fleet_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/testkit/fleettest"
)

// TestObserverSnapshot builds a snapshot of a fleet the engine has run on,
// through the real SDK against the sandbox, and checks that each user's
// keys, roles, schedule and last use are what the stored state says.
func TestObserverSnapshot(t *testing.T) {
	w := fleettest.New(t)
	snap, err := w.Observer.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := fleettest.T0.Add(150 * time.Second)
	if !snap.At.Equal(now) {
		t.Errorf("snapshot at %s, want %s", snap.At, now)
	}
	users := map[string]fleet.User{}
	for _, u := range snap.Users {
		users[u.Name] = u
	}
	if len(users) != 5 {
		t.Fatalf("snapshot has %d users, want 5: %+v", len(users), snap.Users)
	}

	alice := users[fleettest.Adopted]
	if len(alice.Keys) != 2 {
		t.Fatalf("alice has %d keys, want 2: %+v", len(alice.Keys), alice.Keys)
	}
	cur, old := alice.Keys[0], alice.Keys[1]
	if cur.Role != fleet.RoleCurrent || !cur.CurrentSince.Equal(fleettest.T0) {
		t.Errorf("alice's first key = %+v, want current since T0", cur)
	}
	if old.Role != fleet.RolePrevious || old.Status != keyrot.KeyInactive {
		// Deactivated by keyrot, so its records now name it.
		t.Errorf("alice's old key = %+v, want an inactive previous key", old)
	}
	if want := fleettest.T0.Add(2 * time.Minute); !old.InactiveSince.Equal(want) || !old.DeleteAt.Equal(want.Add(time.Minute)) {
		t.Errorf("alice's old key inactive since %s, deleted at %s; want %s and a minute later", old.InactiveSince, old.DeleteAt, want)
	}
	if alice.Next != "delete key "+old.ID || !alice.NextAt.Equal(old.DeleteAt) {
		t.Errorf("alice's next = %q at %s", alice.Next, alice.NextAt)
	}
	if !hasHappening(alice, cur.ID, "made current") || !hasHappening(alice, old.ID, "deactivated") {
		t.Errorf("alice's history lacks the promotion or the deactivation: %+v", alice.History)
	}

	bob := users[fleettest.Fresh]
	if k, ok := bob.Current(); !ok || !k.LastUsed.Equal(fleettest.T0.Add(time.Minute)) {
		t.Errorf("bob's current key = %+v (ok %v), want one last used at T0+1m", k, ok)
	}
	if bob.Next != "rotate: create a new key" || !bob.NextAt.Equal(fleettest.T0.Add(5*time.Minute)) {
		t.Errorf("bob's next = %q at %s", bob.Next, bob.NextAt)
	}

	carol := users[fleettest.Exempt]
	if carol.Exempt == "" || len(carol.Keys) != 1 || carol.Keys[0].Role != fleet.RoleExempt {
		t.Errorf("carol = %+v, want exempt with her one key listed", carol)
	}
	if ghost := users[fleettest.Missing]; !ghost.Missing || ghost.Error == "" {
		t.Errorf("ghost = %+v, want missing with an error", ghost)
	}

	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range w.Secrets() {
		if strings.Contains(string(b), s) {
			t.Fatalf("the snapshot holds a secret access key")
		}
	}
	if len(w.Secrets()) < 5 {
		t.Errorf("the world made %d secrets, want at least 5: the leak check checks little", len(w.Secrets()))
	}
	if evs := w.Events.Recent(fleettest.Adopted); len(evs) == 0 || evs[0].Kind != keyrot.EventKeyDeactivated {
		t.Errorf("alice's recent events = %+v, want the deactivation first", evs)
	}
}

func hasHappening(u fleet.User, keyID, what string) bool {
	for _, h := range u.History {
		if h.KeyID == keyID && strings.HasPrefix(h.What, what) {
			return true
		}
	}
	return false
}
