package ui

import (
	"slices"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
)

// TestDrawTimeline checks the lanes of a user in the middle of a rotation:
// the previous key was current, is still active until its deactivation,
// then inactive until its deletion; the future is drawn as planned.
func TestDrawTimeline(t *testing.T) {
	now := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	p := keyrot.DefaultPolicy() // 5m, 2m, 1m
	u := fleet.User{Name: "alice", Next: "deactivate key AKIAPREV", NextAt: now.Add(time.Minute), Keys: []fleet.Key{
		{ID: "AKIACUR", Role: fleet.RoleCurrent, Status: keyrot.KeyActive, Created: now.Add(-time.Minute), CurrentSince: now.Add(-time.Minute), LastUsed: now.Add(-10 * time.Second)},
		{ID: "AKIAPREV", Role: fleet.RolePrevious, Status: keyrot.KeyActive, Created: now.Add(-6 * time.Minute), DeactivateAt: now.Add(time.Minute), DeleteAt: now.Add(2 * time.Minute)},
		{ID: "AKIAPEND", Role: fleet.RolePending, Status: keyrot.KeyActive, Created: now.Add(-5 * time.Second)},
		{ID: "AKIAOTHER", Role: fleet.RoleUnmanaged, Status: keyrot.KeyInactive, Created: now.Add(-time.Hour)},
	}}
	tl := drawTimeline(u, p, now)
	classes := func(l lane) []string {
		var out []string
		for _, s := range l.Segments {
			out = append(out, s.Class)
		}
		return out
	}
	for i, want := range [][]string{
		{"current", "current planned", "previous planned", "inactive planned"},
		{"current", "previous", "previous planned", "inactive planned"},
		{"pending"},
		{"other"},
	} {
		if got := classes(tl.Lanes[i]); !slices.Equal(got, want) {
			t.Errorf("lane %s: segments %v, want %v", tl.Lanes[i].Label, got, want)
		}
	}
	if !slices.ContainsFunc(tl.Lanes[0].Marks, func(m mark) bool { return m.Class == "used" }) ||
		!slices.ContainsFunc(tl.Lanes[1].Marks, func(m mark) bool { return m.Class == "delete planned" }) {
		t.Errorf("marks: %+v / %+v", tl.Lanes[0].Marks, tl.Lanes[1].Marks)
	}
	if len(tl.Ticks) == 0 || len(tl.Ticks) > 9 {
		t.Errorf("%d ticks", len(tl.Ticks))
	}
	for _, l := range tl.Lanes {
		for _, s := range l.Segments {
			if s.X < tlLabelW || s.X+s.W > tlWidth || s.W <= 0 {
				t.Errorf("lane %s: segment %+v outside the drawing", l.Label, s)
			}
		}
	}
	if tl.NowX <= tlLabelW || tl.NowX >= tlWidth {
		t.Errorf("now at x=%v", tl.NowX)
	}
}

func TestAt(t *testing.T) {
	now := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, ""},
		{now, "now"},
		{now.Add(90 * time.Second), "in 1m30s"},
		{now.Add(-3 * 24 * time.Hour), "3d ago"},
	} {
		if got := at(tt.t, now).Rel; got != tt.want {
			t.Errorf("at(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
	if got := dueAt(now.Add(-time.Second), now).Rel; got != "due now" {
		t.Errorf("dueAt(past) = %q, want due now", got)
	}
}
