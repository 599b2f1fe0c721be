// The Secrets Manager service's state on disk (--data).

package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// smSnapshot is the persisted form of the service.
type smSnapshot struct {
	Secrets []smSecretState
}

// snapshot returns the service's state as JSON.
func (m *secretsManager) snapshot() (json.RawMessage, error) {
	m.mu.RLock()
	all := slices.Collect(maps.Values(m.secrets))
	m.mu.RUnlock()
	var snap smSnapshot
	for _, s := range all {
		s.mu.Lock()
		if !s.gone {
			b, err := json.Marshal(s.st) // deep copy under the lock
			if err != nil {
				s.mu.Unlock()
				return nil, fmt.Errorf("secretsmanager: snapshot secret %q: %w", s.st.Name, err)
			}
			var st smSecretState
			if err := json.Unmarshal(b, &st); err != nil {
				s.mu.Unlock()
				return nil, fmt.Errorf("secretsmanager: snapshot secret %q: %w", s.st.Name, err)
			}
			snap.Secrets = append(snap.Secrets, st)
		}
		s.mu.Unlock()
	}
	slices.SortFunc(snap.Secrets, func(a, b smSecretState) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("secretsmanager: snapshot: %w", err)
	}
	return b, nil
}

// restore replaces the service's state with a snapshot.
func (m *secretsManager) restore(raw json.RawMessage) error {
	var snap smSnapshot
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &snap); err != nil {
			return fmt.Errorf("secretsmanager: restore: %w", err)
		}
	}
	secrets := make(map[string]*smSecret, len(snap.Secrets))
	byARN := make(map[string]*smSecret, len(snap.Secrets))
	for _, st := range snap.Secrets {
		s := &smSecret{st: st}
		if s.st.Versions == nil {
			s.st.Versions = map[string]*smVer{}
		}
		if s.st.Stages == nil {
			s.st.Stages = map[string]string{}
		}
		if st.Policy != "" {
			p, err := parseSMPolicy(st.Policy)
			if err != nil {
				return fmt.Errorf("secretsmanager: restore secret %q: %w", st.Name, err)
			}
			s.policy = p
		}
		secrets[st.Name] = s
		byARN[st.ARN] = s
	}
	m.mu.Lock()
	for _, s := range m.secrets {
		s.mu.Lock()
		s.gone = true
		s.mu.Unlock()
	}
	m.secrets, m.byARN = secrets, byARN
	m.mu.Unlock()
	return nil
}
