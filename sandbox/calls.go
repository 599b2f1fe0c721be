package sandbox

import "sync"

// callCounter counts the authenticated AWS calls per "service:Operation"
// (faulted ones included: the client made them), for tests and benchmarks
// that check what a piece of work costs.
type callCounter struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *callCounter) add(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[op]++
}

// Calls returns how many times each operation was called since the start or
// the last ResetCalls, keyed "iam:ListAccessKeys", "secretsmanager:ListSecrets", ...
// (GET /_sandbox/calls).
func (s *Server) Calls() map[string]int64 {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	out := make(map[string]int64, len(s.calls.n))
	for k, v := range s.calls.n {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the call counter (DELETE /_sandbox/calls).
func (s *Server) ResetCalls() {
	s.calls.mu.Lock()
	defer s.calls.mu.Unlock()
	s.calls.n = nil
}
