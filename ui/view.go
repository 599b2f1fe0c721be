package ui

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
)

// page is what every template gets.
type page struct {
	Title   string
	Who     string // the API key's name, when authenticated
	Message string
	// Stale says the view could not be refreshed.
	Stale          string
	RefreshSeconds int
	At             when
	Fleet          *fleetView
	User           *userView
}

// when is a time shown relative to the snapshot, with the exact time in UTC.
type when struct {
	Rel string // "in 2m30s", "3d ago", "now"; "" for no time
	UTC string // RFC 3339
}

func at(t, now time.Time) when {
	if t.IsZero() {
		return when{}
	}
	w := when{UTC: t.UTC().Format(time.RFC3339)}
	switch d := t.Sub(now); {
	case d > -time.Second && d < time.Second:
		w.Rel = "now"
	case d > 0:
		w.Rel = "in " + fleet.FormatAge(d)
	default:
		w.Rel = fleet.FormatAge(-d) + " ago"
	}
	return w
}

// dueAt is at, except that a planned time already reached is "due now".
func dueAt(t, now time.Time) when {
	w := at(t, now)
	if !t.IsZero() && !t.After(now) {
		w.Rel = "due now"
	}
	return w
}

type count struct {
	Label string
	N     int
	Class string
}

type fleetView struct {
	Counts     []count
	Managed    []row
	Exempt     []row
	HasTargets bool
	Rules      string
}

// row is one user in the fleet table.
type row struct {
	Name     string
	Href     string
	Exempt   string
	Missing  bool
	Current  *keyView
	Others   []keyView
	Keys     []keyView
	DueNow   []string
	Next     string
	NextAt   when
	Warnings []fleet.Warning
	Error    string
	Findings []fleet.Finding
	Targets  []fleet.Target
}

type keyView struct {
	ID            string
	Role          string
	Status        string
	Inactive      bool
	Created       when
	Age           string
	LastUsed      when
	CurrentSince  when
	InactiveSince when
	DeactivateAt  when
	DeleteAt      when
}

func newKeyView(k fleet.Key, now time.Time) keyView {
	return keyView{
		ID: k.ID, Role: string(k.Role), Status: string(k.Status), Inactive: k.Status == keyrot.KeyInactive,
		Created: at(k.Created, now), Age: fleet.FormatAge(k.Age(now)), LastUsed: at(k.LastUsed, now),
		CurrentSince: at(k.CurrentSince, now), InactiveSince: at(k.InactiveSince, now),
		DeactivateAt: dueAt(k.DeactivateAt, now), DeleteAt: dueAt(k.DeleteAt, now),
	}
}

func newRow(u fleet.User, now time.Time, rules fleet.Rules) row {
	r := row{Name: u.Name, Href: Prefix + "/users/" + url.PathEscape(u.Name), Exempt: u.Exempt, Missing: u.Missing,
		DueNow: u.Due, Next: u.Next, NextAt: at(u.NextAt, now), Warnings: u.Warnings,
		Error: keyrot.RedactSecrets(u.Error), Findings: rules.Check(u, now), Targets: u.Targets}
	for i := range r.Findings {
		r.Findings[i].Detail = keyrot.RedactSecrets(r.Findings[i].Detail)
	}
	for _, k := range u.Keys {
		kv := newKeyView(k, now)
		r.Keys = append(r.Keys, kv)
		if k.Role == fleet.RoleCurrent {
			r.Current = &kv
		} else {
			r.Others = append(r.Others, kv)
		}
	}
	return r
}

func (h *Handler) base(p Principal, s fleet.Snapshot, stale string) page {
	return page{Who: p.Name, Stale: stale, RefreshSeconds: int(h.cfg.Refresh / time.Second), At: at(s.At, s.At)}
}

// visible returns the users p may see.
func visible(p Principal, users []fleet.User) []fleet.User {
	var out []fleet.User
	for _, u := range users {
		if p.Allows(u.Name) {
			out = append(out, u)
		}
	}
	return out
}

func (h *Handler) fleetPage(p Principal, s fleet.Snapshot, stale string) page {
	pg := h.base(p, s, stale)
	pg.Title = "Fleet"
	v := &fleetView{Rules: rulesText(h.cfg.Rules)}
	var due, warned, failed, out int
	for _, u := range visible(p, s.Users) {
		r := newRow(u, s.At, h.cfg.Rules)
		v.HasTargets = v.HasTargets || len(u.Targets) > 0
		if len(r.DueNow) > 0 {
			due++
		}
		if len(r.Warnings) > 0 {
			warned++
		}
		if r.Error != "" {
			failed++
		}
		if len(r.Findings) > 0 {
			out++
		}
		if u.Exempt != "" {
			v.Exempt = append(v.Exempt, r)
		} else {
			v.Managed = append(v.Managed, r)
		}
	}
	v.Counts = []count{
		{"managed", len(v.Managed), ""},
		{"exempt", len(v.Exempt), ""},
		{"due now", due, "due"},
		{"with warnings", warned, "warn"},
		{"failing", failed, "bad"},
		{"out of policy", out, "bad"},
	}
	pg.Fleet = v
	return pg
}

func rulesText(r fleet.Rules) string {
	return fmt.Sprintf("policy: active keys at most %s old and used within %s; no inactive key left undeleted", fleet.FormatAge(r.MaxKeyAge), fleet.FormatAge(r.MaxUnused))
}

type userView struct {
	row
	Policy    string
	Timeline  timeline
	Seen      []eventView
	SeenSince when
	SeenKept  bool // an event log is wired in
	History   []happeningView
	Rules     string
}

type eventView struct {
	At      when
	Kind    string
	KeyID   string
	Summary string
}

type happeningView struct {
	At    when
	KeyID string
	What  string
	From  string
}

func (h *Handler) userPage(p Principal, s fleet.Snapshot, u fleet.User, stale string) page {
	pg := h.base(p, s, stale)
	pg.Title = u.Name
	now := s.At
	v := &userView{row: newRow(u, now, h.cfg.Rules), Rules: rulesText(h.cfg.Rules),
		Policy: fmt.Sprintf("rotate every %s; the previous key is deactivated %s after its successor becomes current, and deleted %s after that",
			keyrot.FormatDuration(s.Policy.RotateEvery), keyrot.FormatDuration(s.Policy.DeactivateAfter), keyrot.FormatDuration(s.Policy.DeleteAfter)),
		Timeline: drawTimeline(u, s.Policy, now)}
	if h.cfg.Events != nil {
		v.SeenKept, v.SeenSince = true, at(h.cfg.Events.Since(), now)
		for _, e := range h.cfg.Events.Recent(u.Name) {
			kind := string(e.Kind)
			if e.Warning != "" {
				kind += ": " + string(e.Warning)
			}
			v.Seen = append(v.Seen, eventView{At: at(e.Time, now), Kind: kind, KeyID: e.KeyID, Summary: keyrot.RedactSecrets(e.Summary)})
		}
	}
	for _, hp := range u.History {
		v.History = append(v.History, happeningView{At: at(hp.At, now), KeyID: hp.KeyID, What: hp.What, From: hp.From})
	}
	pg.User = v
	return pg
}

// The timeline is an SVG drawn on the server: one lane per key, its life
// in segments (current, previous and still active, inactive), solid up to
// now and lighter where it is keyrot's plan, with marks for the last use
// and the deletion.
const (
	tlWidth     = 1000
	tlLabelW    = 200
	tlLaneH     = 34
	tlBarH      = 16
	tlTop       = 8
	tlAxisH     = 28
	tlMaxLookup = 2 // how many rotation cycles before and after now are drawn at most
)

type timeline struct {
	Width, Height int
	BarH          int
	NowX          float64
	AxisY         int
	Lanes         []lane
	Ticks         []tick
	Label         string
}

type lane struct {
	Y, BarY, MidY, TextY int
	Label                string
	Sub                  string
	Segments             []segment
	Marks                []mark
}

type segment struct {
	X, W  float64
	Class string
	Title string
}

type mark struct {
	X     float64
	Class string
	Title string
}

type tick struct {
	X     float64
	Label string
}

func drawTimeline(u fleet.User, p keyrot.Policy, now time.Time) timeline {
	cycle := p.RotateEvery + p.DeactivateAfter + p.DeleteAfter
	start, end := now.Add(-p.RotateEvery), now.Add(p.RotateEvery)
	for _, k := range u.Keys {
		start = earlier(start, k.Created)
		end = laterOf(end, k.DeleteAt)
	}
	if cur, ok := u.Current(); ok {
		end = laterOf(end, rotateAt(u, cur, p, now).Add(p.DeactivateAfter+p.DeleteAfter))
	}
	start = laterOf(start, now.Add(-tlMaxLookup*cycle))
	end = earlier(end, now.Add(tlMaxLookup*cycle))
	span := end.Sub(start)
	start, end = start.Add(-span/40), end.Add(span/40)
	span = end.Sub(start)
	x := func(t time.Time) float64 {
		t = laterOf(start, earlier(end, t))
		return tlLabelW + float64(t.Sub(start))/float64(span)*float64(tlWidth-tlLabelW-10)
	}
	tl := timeline{Width: tlWidth, BarH: tlBarH, NowX: x(now), Label: fmt.Sprintf("Key timeline of %s, %s to %s UTC", u.Name, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))}
	for i, k := range u.Keys {
		y := tlTop + i*tlLaneH
		ln := lane{Y: y, BarY: y + (tlLaneH-tlBarH)/2, MidY: y + tlLaneH/2, TextY: y + tlLaneH/2 - 2, Label: k.ID, Sub: string(k.Role) + ", " + strings.ToLower(string(k.Status))}
		add := func(from, to time.Time, class, what string) {
			if to.IsZero() || !to.After(from) {
				return
			}
			title := fmt.Sprintf("%s: %s to %s", what, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
			if from.Before(now) {
				past := earlier(to, now)
				ln.Segments = append(ln.Segments, segment{X: x(from), W: x(past) - x(from), Class: class, Title: title})
			}
			if to.After(now) {
				from := laterOf(from, now)
				ln.Segments = append(ln.Segments, segment{X: x(from), W: x(to) - x(from), Class: class + " planned", Title: title + " (planned)"})
			}
		}
		switch k.Role {
		case fleet.RoleCurrent:
			since := k.CurrentSince
			if since.IsZero() {
				since = k.Created
			}
			add(k.Created, since, "pending", "created, being verified")
			rot := rotateAt(u, k, p, now)
			add(since, rot, "current", "current")
			add(rot, rot.Add(p.DeactivateAfter), "previous", "previous, still active")
			add(rot.Add(p.DeactivateAfter), rot.Add(p.DeactivateAfter+p.DeleteAfter), "inactive", "inactive")
			ln.Marks = append(ln.Marks, mark{X: x(rot.Add(p.DeactivateAfter + p.DeleteAfter)), Class: "delete planned", Title: "deleted (planned)"})
		case fleet.RoleExempt, fleet.RoleUnmanaged:
			add(k.Created, now, "other", "not managed by keyrot")
		case fleet.RolePending:
			add(k.Created, now, "pending", "created by a rotation not finished yet")
		default:
			replaced := k.Created
			if cur, ok := u.Current(); ok && k.Role == fleet.RolePrevious && !cur.CurrentSince.IsZero() {
				replaced = cur.CurrentSince
				add(k.Created, replaced, "current", "current")
			} else if k.Role == fleet.RoleAdopted {
				add(k.Created, replaced, "other", "created outside keyrot")
			}
			deactivated := k.InactiveSince
			if deactivated.IsZero() {
				deactivated = k.DeactivateAt
			}
			if deactivated.IsZero() && k.Status == keyrot.KeyActive {
				deactivated = now // nothing planned: active as far as is known
			}
			add(replaced, deactivated, "previous", "previous, still active")
			if !k.DeleteAt.IsZero() {
				add(laterOf(deactivated, k.Created), k.DeleteAt, "inactive", "inactive")
				ln.Marks = append(ln.Marks, mark{X: x(k.DeleteAt), Class: planned("delete", k.DeleteAt, now), Title: "deleted at " + k.DeleteAt.UTC().Format(time.RFC3339)})
			} else if k.Status == keyrot.KeyInactive {
				add(laterOf(deactivated, k.Created), now, "inactive", "inactive, no deletion planned")
			}
		}
		if !k.LastUsed.IsZero() {
			ln.Marks = append(ln.Marks, mark{X: x(k.LastUsed), Class: "used", Title: "last used " + k.LastUsed.UTC().Format(time.RFC3339)})
		}
		tl.Lanes = append(tl.Lanes, ln)
	}
	lanes := max(1, len(u.Keys))
	tl.AxisY = tlTop + lanes*tlLaneH + 4
	tl.Height = tl.AxisY + tlAxisH
	tl.Ticks = ticks(start, end, x)
	return tl
}

func planned(class string, t, now time.Time) string {
	if t.After(now) {
		return class + " planned"
	}
	return class
}

// rotateAt is when the current key is replaced: the plan's next rotation,
// else its age reaching rotate_every, and never before now.
func rotateAt(u fleet.User, cur fleet.Key, p keyrot.Policy, now time.Time) time.Time {
	t := cur.Created.Add(p.RotateEvery)
	if strings.HasPrefix(u.Next, "rotate") && !u.NextAt.IsZero() {
		t = u.NextAt
	}
	return laterOf(t, now)
}

var tickSteps = []time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour, 90 * 24 * time.Hour, 365 * 24 * time.Hour,
}

// ticks marks round times along the axis, at most about eight.
func ticks(start, end time.Time, x func(time.Time) float64) []tick {
	span := end.Sub(start)
	i := slices.IndexFunc(tickSteps, func(d time.Duration) bool { return span/d <= 8 })
	if i < 0 {
		i = len(tickSteps) - 1
	}
	step := tickSteps[i]
	layout := "15:04"
	switch {
	case step < time.Minute:
		layout = "15:04:05"
	case step >= 24*time.Hour:
		layout = "Jan 2"
	}
	var out []tick
	for t := start.Truncate(step).Add(step); t.Before(end); t = t.Add(step) {
		out = append(out, tick{X: x(t), Label: t.UTC().Format(layout)})
	}
	return out
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
