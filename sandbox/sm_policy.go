package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// smPolicy is a parsed Secrets Manager resource policy. Only what the sandbox
// evaluates is kept: Effect, Principal, Action and Resource. Statements with a
// Condition, NotPrincipal, NotAction or NotResource never allow anything (the
// sandbox can't evaluate them), and Deny statements always apply.
type smPolicy struct {
	Statement []smStatement
}

type smStatement struct {
	Effect       string
	Principal    smPrincipal
	NotPrincipal json.RawMessage
	Action       smStringList
	NotAction    smStringList
	Resource     smStringList
	NotResource  smStringList
	Condition    json.RawMessage
}

// smPrincipal is "*" or {"AWS": "arn" | ["arn", ...], "Service": ...}.
type smPrincipal struct {
	Any bool     // "*" or {"AWS": "*"}
	AWS []string // principal ARNs or account ids
	Set bool     // the element was present
}

func (p *smPrincipal) UnmarshalJSON(b []byte) error {
	p.Set = true
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s != "*" {
			return fmt.Errorf("principal %q: must be \"*\" or an object", s)
		}
		p.Any = true
		return nil
	}
	var m map[string]smStringList
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("principal: %w", err)
	}
	for _, v := range m["AWS"] {
		if v == "*" {
			p.Any = true
		}
		p.AWS = append(p.AWS, v)
	}
	return nil
}

// smStringList is a policy element that is a string or a list of strings.
type smStringList []string

func (l *smStringList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = smStringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return errors.New("must be a string or a list of strings")
	}
	*l = ss
	return nil
}

// parseSMPolicy parses and checks a resource policy document.
func parseSMPolicy(doc string) (*smPolicy, error) {
	var raw struct {
		Version   string
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(doc), &raw); err != nil {
		return nil, fmt.Errorf("policy is not valid JSON: %w", err)
	}
	st := bytes.TrimSpace(raw.Statement)
	if len(st) == 0 {
		return nil, errors.New("policy has no Statement")
	}
	var p smPolicy
	if st[0] == '{' {
		var one smStatement
		if err := json.Unmarshal(st, &one); err != nil {
			return nil, fmt.Errorf("statement: %w", err)
		}
		p.Statement = []smStatement{one}
	} else if err := json.Unmarshal(st, &p.Statement); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	for i, s := range p.Statement {
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, fmt.Errorf("statement %d: Effect must be Allow or Deny", i+1)
		}
		if !s.Principal.Set && s.NotPrincipal == nil {
			return nil, fmt.Errorf("statement %d: a resource policy statement needs a Principal", i+1)
		}
		if s.Action == nil && s.NotAction == nil {
			return nil, fmt.Errorf("statement %d: missing Action", i+1)
		}
	}
	return &p, nil
}

// public reports whether an Allow statement grants access to everyone.
func (p *smPolicy) public() bool {
	for _, s := range p.Statement {
		if s.Effect == "Allow" && s.Principal.Any {
			return true
		}
	}
	return false
}

// allows reports whether the policy lets principalARN perform action
// (e.g. "secretsmanager:GetSecretValue") on resourceARN.
func (p *smPolicy) allows(principalARN, action, resourceARN string) bool {
	allowed := false
	for _, s := range p.Statement {
		switch s.Effect {
		case "Deny":
			if s.matches(principalARN, action, resourceARN, true) {
				return false
			}
		case "Allow":
			if s.Condition == nil && s.NotPrincipal == nil && s.NotAction == nil && s.NotResource == nil &&
				s.matches(principalARN, action, resourceARN, false) {
				allowed = true
			}
		}
	}
	return allowed
}

func (s *smStatement) matches(principalARN, action, resourceARN string, deny bool) bool {
	principalOK := s.Principal.Any
	for _, a := range s.Principal.AWS {
		if a == principalARN {
			principalOK = true
		}
	}
	if deny && !s.Principal.Set {
		principalOK = true // NotPrincipal deny: apply conservatively
	}
	if !principalOK {
		return false
	}
	actionOK := false
	for _, a := range s.Action {
		if wildcardMatch(strings.ToLower(a), strings.ToLower(action)) {
			actionOK = true
		}
	}
	if deny && s.Action == nil {
		actionOK = true // NotAction deny: apply conservatively
	}
	if !actionOK {
		return false
	}
	if s.Resource == nil {
		return true // a resource policy applies to the resource it is attached to
	}
	for _, r := range s.Resource {
		if wildcardMatch(r, resourceARN) {
			return true
		}
	}
	return false
}

// wildcardMatch matches s against an IAM-style pattern where * matches any
// run of characters and ? any single character.
func wildcardMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
