package http

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestFailedAuthMemoryBounded: however many addresses fail, the table holds
// at most Clients of them, and it empties once they have gone quiet, so the
// request path skips it again.
func TestFailedAuthMemoryBounded(t *testing.T) {
	f := newFailedAuth(AuthFailureLimit{Burst: 2, Every: time.Second, MaxDelay: 4 * time.Second, Clients: 50})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 10000 {
		addr := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff))
		f.fail(addr, now)
		f.admitLog(addr, now)
	}
	if got := f.clients.Len(); got != 50 {
		t.Fatalf("%d addresses remembered, want the bound 50", got)
	}
	if got := f.tracked.Load(); got != 50 {
		t.Fatalf("tracked = %d", got)
	}
	now = now.Add(15 * time.Second) // past MaxDelay, LogEvery and the refill
	f.fail(netip.MustParseAddr("192.0.2.1"), now)
	if got := f.clients.Len(); got != 1 {
		t.Fatalf("%d addresses remembered after the others went quiet, want 1", got)
	}
	now = now.Add(15 * time.Second)
	if wait := f.blocked(netip.MustParseAddr("192.0.2.2"), now); wait != 0 {
		t.Fatalf("a new address must wait %s", wait)
	}
	if got := f.tracked.Load(); got != 0 {
		t.Fatalf("tracked = %d once everyone is quiet, want 0", got)
	}
}
