package ui

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// sessions maps random session ids to the API key that opened them, in
// memory only: the cookie holds the id, never the key, and a restart logs
// everyone out. Safe for concurrent use.
type sessions struct {
	max int

	mu   sync.Mutex
	byID map[string]session
}

type session struct {
	apiKey  string
	expires time.Time
}

func newSessions(max int) *sessions {
	return &sessions{max: max, byID: map[string]session{}}
}

// open starts a session for apiKey until expires and returns its id: 256
// random bits. At the bound, the session nearest its end makes room.
func (s *sessions) open(apiKey string, expires time.Time) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ui: session id: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		// The session nearest its end goes (an expired one first).
		var oldest string
		for k, v := range s.byID {
			if oldest == "" || v.expires.Before(s.byID[oldest].expires) {
				oldest = k
			}
		}
		delete(s.byID, oldest)
	}
	s.byID[id] = session{apiKey: apiKey, expires: expires}
	return id, nil
}

// get returns the API key of the session id, if it exists and has not
// expired at now; an expired session is dropped.
func (s *sessions) get(id string, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.byID[id]
	if !ok {
		return "", false
	}
	if !now.Before(v.expires) {
		delete(s.byID, id)
		return "", false
	}
	return v.apiKey, true
}

// drop ends the session id.
func (s *sessions) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// len is the number of sessions kept.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
