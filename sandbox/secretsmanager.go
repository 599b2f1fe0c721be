package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Secrets Manager limits and labels, as AWS documents them.
const (
	smMaxVersions      = 100            // versions a secret may hold
	smMinVersionAge    = 24 * time.Hour // versions younger than this are never pruned
	smMaxSecretSize    = 65536          // bytes of SecretString or SecretBinary
	smMaxTags          = 50
	smMaxStagesPerVer  = 20
	smDefaultRecovery  = 30 // days
	smMaxListResults   = 100
	smMaxBatchResults  = 20
	smMaxBatchSecretID = 20

	stageCurrent  = "AWSCURRENT"
	stagePrevious = "AWSPREVIOUS"
)

// smNameRE is the set of characters AWS allows in a secret name.
var smNameRE = regexp.MustCompile(`^[A-Za-z0-9/_+=.@-]+$`)

// smTagRE is the set of characters AWS allows in tag keys and values.
var smTagRE = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// smReadOp reports whether op is one a non-admin caller may be granted by a
// secret's resource policy.
func smReadOp(op string) bool {
	return op == "GetSecretValue" || op == "DescribeSecret" || op == "ListSecretVersionIds"
}

// secretsManager is the sandbox's Secrets Manager: secrets with versions,
// staging labels, tags and resource policies, and AWS's version quota.
//
// Locking: mu guards the two maps; each secret has its own mutex guarding its
// state. Locks are taken map first, then secret, never the other way round.
type secretsManager struct {
	clock     Clock
	accountID string
	region    string
	changed   func()

	rngMu sync.Mutex
	rng   *rand.Rand

	mu      sync.RWMutex
	secrets map[string]*smSecret // by name
	byARN   map[string]*smSecret
}

// smSecret is one secret. gone is set (under mu) once the secret has left the
// service's maps, so a caller that found it just before cannot use it.
type smSecret struct {
	mu     sync.Mutex
	st     smSecretState
	gone   bool
	policy *smPolicy // parsed st.Policy, nil when there is none
}

// smSecretState is a secret's persistent state.
type smSecretState struct {
	ARN          string
	Name         string
	Description  string            `json:",omitempty"`
	KmsKeyID     string            `json:",omitempty"`
	Tags         []smTag           `json:",omitempty"`
	Policy       string            `json:",omitempty"`
	Created      time.Time         //
	LastChanged  time.Time         //
	LastAccessed time.Time         // day precision, as AWS reports it
	Deleted      time.Time         // when DeleteSecret was called; zero if not scheduled
	DeletionDate time.Time         // when a scheduled deletion takes effect
	Versions     map[string]*smVer // by version id
	Stages       map[string]string // staging label -> version id
	Seq          int64             // creation counter for versions
}

// smVer is one version of a secret's value.
type smVer struct {
	ID           string
	String       *string `json:",omitempty"`
	Binary       []byte  `json:",omitempty"`
	Created      time.Time
	LastAccessed time.Time
	Seq          int64
}

type smTag struct {
	Key   string
	Value string
}

type smFilter struct {
	Key    string
	Values []string
}

// epochSeconds renders a time as Secrets Manager does: seconds since the epoch
// as a JSON number with a fractional part.
type epochSeconds time.Time

// MarshalJSON implements json.Marshaler.
func (t epochSeconds) MarshalJSON() ([]byte, error) {
	ms := time.Time(t).UnixMilli()
	return []byte(fmt.Sprintf("%d.%03d", ms/1000, ms%1000)), nil
}

func smTime(t time.Time) *epochSeconds {
	if t.IsZero() {
		return nil
	}
	e := epochSeconds(t)
	return &e
}

// newSecretsManager returns an empty Secrets Manager for the given account and
// region. seed makes ARN suffixes and version ids reproducible; changed is
// called after every mutation.
func newSecretsManager(clock Clock, accountID, region string, seed int64, changed func()) *secretsManager {
	if clock == nil {
		clock = wallClock{}
	}
	if changed == nil {
		changed = func() {}
	}
	return &secretsManager{
		clock:     clock,
		accountID: accountID,
		region:    region,
		changed:   changed,
		rng:       rand.New(rand.NewPCG(uint64(seed), 0x5ec2e75)),
		secrets:   map[string]*smSecret{},
		byARN:     map[string]*smSecret{},
	}
}

// smCall carries one request through an operation.
type smCall struct {
	caller principal
	op     string
	now    time.Time
	dirty  bool // the operation changed state
}

// touch records that the operation changed st.
func (c *smCall) touch(st *smSecretState) {
	st.LastChanged = c.now
	c.dirty = true
}

// handle runs one Secrets Manager JSON 1.1 operation.
func (m *secretsManager) handle(caller principal, op string, body []byte) (any, *apiError) {
	c := &smCall{caller: caller, op: op, now: m.clock.Now()}
	if !caller.Admin && !smReadOp(op) {
		if _, known := m.opFunc(op); known {
			return nil, errorf(400, "AccessDeniedException",
				"User: %s is not authorized to perform: secretsmanager:%s because no identity-based policy allows the secretsmanager:%s action",
				caller.ARN, op, op)
		}
	}
	f, ok := m.opFunc(op)
	if !ok {
		return nil, errorf(400, "UnknownOperationException", "The operation %q is not supported by the keyrot sandbox's Secrets Manager.", op)
	}
	resp, err := f(c, body)
	if c.dirty {
		m.changed()
	}
	return resp, err
}

func (m *secretsManager) opFunc(op string) (func(*smCall, []byte) (any, *apiError), bool) {
	switch op {
	case "CreateSecret":
		return m.createSecret, true
	case "DescribeSecret":
		return m.describeSecret, true
	case "GetSecretValue":
		return m.getSecretValue, true
	case "PutSecretValue":
		return m.putSecretValue, true
	case "UpdateSecret":
		return m.updateSecret, true
	case "UpdateSecretVersionStage":
		return m.updateSecretVersionStage, true
	case "ListSecretVersionIds":
		return m.listSecretVersionIds, true
	case "ListSecrets":
		return m.listSecrets, true
	case "BatchGetSecretValue":
		return m.batchGetSecretValue, true
	case "TagResource":
		return m.tagResource, true
	case "UntagResource":
		return m.untagResource, true
	case "PutResourcePolicy":
		return m.putResourcePolicy, true
	case "GetResourcePolicy":
		return m.getResourcePolicy, true
	case "DeleteResourcePolicy":
		return m.deleteResourcePolicy, true
	case "DeleteSecret":
		return m.deleteSecret, true
	case "RestoreSecret":
		return m.restoreSecret, true
	}
	return nil, false
}

// smDecode parses a request body. An empty body is an empty request.
func smDecode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		// The error names offsets and Go types, never the request's values.
		return errorf(400, "SerializationException", "Could not parse the request body: %v", err)
	}
	return nil
}

func smValidation(field, constraint string) *apiError {
	return errorf(400, "ValidationException",
		"1 validation error detected: Value at '%s' failed to satisfy constraint: %s", field, constraint)
}

func smNotFound() *apiError {
	return errorf(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
}

func smMarkedForDeletion() *apiError {
	return errorf(400, "InvalidRequestException",
		"You can't perform this operation on the secret because it was marked for deletion.")
}

func checkSecretID(id string) *apiError {
	if id == "" {
		return smValidation("secretId", "Member must have length greater than or equal to 1")
	}
	if len(id) > 2048 {
		return smValidation("secretId", "Member must have length less than or equal to 2048")
	}
	return nil
}

func checkToken(tok string) *apiError {
	if tok == "" {
		return nil
	}
	if len(tok) < 32 {
		return smValidation("clientRequestToken", "Member must have length greater than or equal to 32")
	}
	if len(tok) > 64 {
		return smValidation("clientRequestToken", "Member must have length less than or equal to 64")
	}
	return nil
}

// checkValue validates a SecretString/SecretBinary pair. required says whether
// one of them must be present.
func checkValue(str *string, bin []byte, required bool) *apiError {
	if str != nil && bin != nil {
		return errorf(400, "InvalidParameterException",
			"You can't specify both a binary secret value and a string secret value in the same secret.")
	}
	if required && str == nil && bin == nil {
		return errorf(400, "InvalidRequestException", "You must provide either SecretString or SecretBinary.")
	}
	if str != nil && len(*str) > smMaxSecretSize {
		return smValidation("secretString", fmt.Sprintf("Member must have length less than or equal to %d", smMaxSecretSize))
	}
	if len(bin) > smMaxSecretSize {
		return smValidation("secretBinary", fmt.Sprintf("Member must have length less than or equal to %d", smMaxSecretSize))
	}
	return nil
}

func checkTags(tags []smTag) *apiError {
	for i, t := range tags {
		field := fmt.Sprintf("tags.%d.member", i+1)
		switch {
		case t.Key == "":
			return smValidation(field+".key", "Member must have length greater than or equal to 1")
		case len(t.Key) > 128:
			return smValidation(field+".key", "Member must have length less than or equal to 128")
		case len(t.Value) > 256:
			return smValidation(field+".value", "Member must have length less than or equal to 256")
		case !smTagRE.MatchString(t.Key):
			return smValidation(field+".key", `Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
		case !smTagRE.MatchString(t.Value):
			return smValidation(field+".value", `Member must satisfy regular expression pattern: ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$`)
		case strings.HasPrefix(strings.ToLower(t.Key), "aws:"):
			return errorf(400, "InvalidParameterException", "Invalid tag key: keys starting with \"aws:\" are reserved for AWS use.")
		}
	}
	return nil
}

// mergeTags adds or overwrites tags, keeping the order of first appearance.
func mergeTags(old, add []smTag) []smTag {
	out := slices.Clone(old)
	for _, t := range add {
		i := slices.IndexFunc(out, func(o smTag) bool { return o.Key == t.Key })
		if i >= 0 {
			out[i].Value = t.Value
		} else {
			out = append(out, t)
		}
	}
	return out
}

func (m *secretsManager) uuid() string {
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	var b [16]byte
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (m *secretsManager) suffix() string {
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	m.rngMu.Lock()
	defer m.rngMu.Unlock()
	b := make([]byte, 6)
	for i := range b {
		b[i] = chars[m.rng.IntN(len(chars))]
	}
	return string(b)
}

// find resolves a SecretId (name, ARN, or ARN without its random suffix) and
// returns the secret locked, or nil. Secrets whose scheduled deletion has
// come are removed on the way.
func (m *secretsManager) find(c *smCall, id string) *smSecret {
	m.mu.RLock()
	s := m.secrets[id]
	if s == nil {
		s = m.byARN[id]
	}
	if s == nil && strings.HasPrefix(id, "arn:") {
		if i := strings.Index(id, ":secret:"); i >= 0 {
			if cand := m.secrets[id[i+len(":secret:"):]]; cand != nil && strings.HasPrefix(cand.st.ARN, id+"-") {
				s = cand
			}
		}
	}
	m.mu.RUnlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return nil
	}
	if s.expired(c.now) {
		s.mu.Unlock()
		m.remove(c, s)
		return nil
	}
	return s
}

// expired reports whether a scheduled deletion has taken effect. s.mu held.
func (s *smSecret) expired(now time.Time) bool {
	return !s.st.Deleted.IsZero() && !now.Before(s.st.DeletionDate)
}

// remove takes secrets out of the maps, unless they are gone already. It
// takes m.mu and each s.mu: hold neither.
func (m *secretsManager) remove(c *smCall, secrets ...*smSecret) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range secrets {
		s.mu.Lock()
		if !s.gone {
			m.removeLocked(s)
			c.dirty = true
		}
		s.mu.Unlock()
	}
}

// removeLocked takes a secret out of the maps. m.mu and s.mu held.
func (m *secretsManager) removeLocked(s *smSecret) {
	s.gone = true
	if m.secrets[s.st.Name] == s {
		delete(m.secrets, s.st.Name)
	}
	if m.byARN[s.st.ARN] == s {
		delete(m.byARN, s.st.ARN)
	}
}

// access finds a secret for an operation on it and checks the caller may
// perform it. allowDeleted lets the operation see a secret scheduled for
// deletion. On success the secret is returned locked.
func (m *secretsManager) access(c *smCall, id string, allowDeleted bool) (*smSecret, *apiError) {
	if err := checkSecretID(id); err != nil {
		return nil, err
	}
	s := m.find(c, id)
	if !c.caller.Admin {
		if s == nil || s.policy == nil || !s.policy.allows(c.caller.ARN, "secretsmanager:"+c.op, s.st.ARN) {
			if s != nil {
				s.mu.Unlock()
			}
			return nil, errorf(400, "AccessDeniedException",
				"User: %s is not authorized to perform: secretsmanager:%s on resource: %s because no resource-based policy allows the secretsmanager:%s action",
				c.caller.ARN, c.op, id, c.op)
		}
	}
	if s == nil {
		return nil, smNotFound()
	}
	if !allowDeleted && !s.st.Deleted.IsZero() {
		s.mu.Unlock()
		return nil, smMarkedForDeletion()
	}
	return s, nil
}
