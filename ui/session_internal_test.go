package ui

import (
	"testing"
	"time"
)

func TestSessionsBounded(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	s := newSessions(2)
	first, err := s.open("key-1", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	second, _ := s.open("key-2", t0.Add(2*time.Hour))
	third, _ := s.open("key-3", t0.Add(3*time.Hour))
	if s.len() != 2 {
		t.Fatalf("%d sessions kept, want the bound, 2", s.len())
	}
	if _, ok := s.get(first, t0); ok {
		t.Error("the session nearest its end was not the one to make room")
	}
	for id, want := range map[string]string{second: "key-2", third: "key-3"} {
		if got, ok := s.get(id, t0); !ok || got != want {
			t.Errorf("get = %q, %v; want %q", got, ok, want)
		}
	}
	if _, ok := s.get(second, t0.Add(2*time.Hour)); ok || s.len() != 1 {
		t.Errorf("an expired session is still kept (%d sessions)", s.len())
	}
	if first == second || len(first) != 43 {
		t.Errorf("session ids %q, %q: want distinct 256-bit ids", first, second)
	}
}
