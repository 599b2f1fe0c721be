package sandbox

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
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

// stagesByVersion inverts the label map.
func (st *smSecretState) stagesByVersion() map[string][]string {
	out := make(map[string][]string, len(st.Stages))
	for label, id := range st.Stages {
		out[id] = append(out[id], label)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func (st *smSecretState) stagesOf(id string) []string {
	var out []string
	for label, vid := range st.Stages {
		if vid == id {
			out = append(out, label)
		}
	}
	slices.Sort(out)
	return out
}

// moveLabel attaches label to version id in stages, moving AWSCURRENT's old
// holder to AWSPREVIOUS as AWS does.
func moveLabel(stages map[string]string, label, id string) {
	if label == stageCurrent {
		if old, ok := stages[stageCurrent]; ok && old != id {
			stages[stagePrevious] = old
		}
	}
	stages[label] = id
}

// addVersion stores a new version with the given labels, enforcing the
// version quota: unlabelled versions beyond smMaxVersions are pruned oldest
// first, but never one younger than smMinVersionAge; if that is not enough
// the write fails with LimitExceededException and nothing changes.
func (st *smSecretState) addVersion(v *smVer, labels []string, now time.Time) *apiError {
	stages := maps.Clone(st.Stages)
	if stages == nil {
		stages = map[string]string{}
	}
	for _, l := range labels {
		moveLabel(stages, l, v.ID)
	}
	var prune []*smVer
	if excess := len(st.Versions) + 1 - smMaxVersions; excess > 0 {
		labelled := map[string]bool{}
		for _, id := range stages {
			labelled[id] = true
		}
		var candidates []*smVer
		for _, old := range st.Versions {
			if !labelled[old.ID] && now.Sub(old.Created) >= smMinVersionAge {
				candidates = append(candidates, old)
			}
		}
		if len(candidates) < excess {
			return errorf(400, "LimitExceededException",
				"You have exceeded the maximum number of versions (%d) for secret %s. Secrets Manager doesn't remove versions created less than 24 hours ago; write new versions less often.",
				smMaxVersions, st.Name)
		}
		slices.SortFunc(candidates, func(a, b *smVer) int { return int(a.Seq - b.Seq) })
		prune = candidates[:excess]
	}
	for _, old := range prune {
		delete(st.Versions, old.ID)
	}
	if st.Versions == nil {
		st.Versions = map[string]*smVer{}
	}
	st.Seq++
	v.Seq = st.Seq
	v.Created = now
	st.Versions[v.ID] = v
	st.Stages = stages
	st.LastChanged = now
	return nil
}

func sameValue(v *smVer, str *string, bin []byte) bool {
	if (v.String == nil) != (str == nil) {
		return false
	}
	if str != nil && *v.String != *str {
		return false
	}
	return bytes.Equal(v.Binary, bin) && (v.Binary == nil) == (bin == nil)
}

func checkName(name string) *apiError {
	if name == "" {
		return smValidation("name", "Member must have length greater than or equal to 1")
	}
	if len(name) > 512 {
		return smValidation("name", "Member must have length less than or equal to 512")
	}
	if !smNameRE.MatchString(name) {
		return errorf(400, "InvalidParameterException",
			"Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@")
	}
	return nil
}

type smSecretRef struct {
	ARN       string
	Name      string
	VersionID string `json:"VersionId,omitempty"`
}

// ref names the secret in an operation's output.
func (st *smSecretState) ref() smSecretRef {
	return smSecretRef{ARN: st.ARN, Name: st.Name}
}

func (m *secretsManager) createSecret(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		Name                        string
		ClientRequestToken          string
		Description                 string
		KmsKeyID                    string `json:"KmsKeyId"`
		SecretString                *string
		SecretBinary                []byte
		Tags                        []smTag
		ForceOverwriteReplicaSecret bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkName(in.Name); err != nil {
		return nil, err
	}
	if err := checkToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if len(in.Description) > 2048 {
		return nil, smValidation("description", "Member must have length less than or equal to 2048")
	}
	if err := checkValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	if err := m.checkKMSKey(in.KmsKeyID); err != nil {
		return nil, err
	}
	tags := mergeTags(nil, in.Tags)
	if len(tags) > smMaxTags {
		return nil, errorf(400, "InvalidParameterException", "A secret can have at most %d tags.", smMaxTags)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.secrets[in.Name]; old != nil {
		old.mu.Lock()
		if old.expired(c.now) {
			m.removeLocked(old)
			c.dirty = true
		} else {
			defer old.mu.Unlock()
			if !old.st.Deleted.IsZero() {
				return nil, errorf(400, "InvalidRequestException",
					"You can't create this secret because a secret with this name is already scheduled for deletion.")
			}
			// A retry of the same request (same token, same value) succeeds.
			if v := old.st.Versions[in.ClientRequestToken]; in.ClientRequestToken != "" && v != nil &&
				sameValue(v, in.SecretString, in.SecretBinary) {
				return smSecretRef{ARN: old.st.ARN, Name: old.st.Name, VersionID: v.ID}, nil
			}
			return nil, errorf(400, "ResourceExistsException", "The operation failed because the secret %s already exists.", in.Name)
		}
		old.mu.Unlock()
	}
	arn := ""
	for arn == "" || m.byARN[arn] != nil {
		arn = fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", m.region, m.accountID, in.Name, m.suffix())
	}
	s := &smSecret{st: smSecretState{
		ARN:         arn,
		Name:        in.Name,
		Description: in.Description,
		KmsKeyID:    in.KmsKeyID,
		Tags:        tags,
		Created:     c.now,
		LastChanged: c.now,
		Versions:    map[string]*smVer{},
		Stages:      map[string]string{},
	}}
	out := smSecretRef{ARN: arn, Name: in.Name}
	if in.SecretString != nil || in.SecretBinary != nil {
		id := in.ClientRequestToken
		if id == "" {
			id = m.uuid()
		}
		v := &smVer{ID: id, String: in.SecretString, Binary: in.SecretBinary}
		if err := s.st.addVersion(v, []string{stageCurrent}, c.now); err != nil {
			return nil, err
		}
		out.VersionID = id
	}
	m.secrets[in.Name] = s
	m.byARN[arn] = s
	c.dirty = true
	return out, nil
}

type smDescribeOutput struct {
	ARN                string
	Name               string
	Description        string              `json:",omitempty"`
	KmsKeyID           string              `json:"KmsKeyId,omitempty"`
	Tags               []smTag             `json:",omitempty"`
	VersionIdsToStages map[string][]string `json:",omitempty"`
	CreatedDate        *epochSeconds       `json:",omitempty"`
	LastChangedDate    *epochSeconds       `json:",omitempty"`
	LastAccessedDate   *epochSeconds       `json:",omitempty"`
	DeletedDate        *epochSeconds       `json:",omitempty"`
}

func (st *smSecretState) describe() smDescribeOutput {
	return smDescribeOutput{
		ARN:                st.ARN,
		Name:               st.Name,
		Description:        st.Description,
		KmsKeyID:           st.KmsKeyID,
		Tags:               slices.Clone(st.Tags),
		VersionIdsToStages: st.stagesByVersion(),
		CreatedDate:        smTime(st.Created),
		LastChangedDate:    smTime(st.LastChanged),
		LastAccessedDate:   smTime(st.LastAccessed),
		DeletedDate:        smTime(st.Deleted),
	}
}

type smSecretIDInput struct {
	SecretID string `json:"SecretId"`
}

// secretByID decodes the input of an operation that takes only a SecretId and
// returns the secret locked, as access does.
func (m *secretsManager) secretByID(c *smCall, body []byte, allowDeleted bool) (*smSecret, *apiError) {
	var in smSecretIDInput
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	return m.access(c, in.SecretID, allowDeleted)
}

func (m *secretsManager) describeSecret(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.st.describe(), nil
}

type smValueOutput struct {
	ARN           string
	Name          string
	VersionID     string        `json:"VersionId"`
	SecretString  *string       `json:",omitempty"`
	SecretBinary  []byte        `json:",omitempty"`
	VersionStages []string      `json:",omitempty"`
	CreatedDate   *epochSeconds `json:",omitempty"`
}

// readValue returns a version's value and records the access. s.mu held.
func (st *smSecretState) readValue(c *smCall, versionID, stage string) (smValueOutput, *apiError) {
	if versionID == "" && stage == "" {
		stage = stageCurrent
	}
	var v *smVer
	if versionID != "" {
		v = st.Versions[versionID]
		if v == nil {
			return smValueOutput{}, errorf(400, "ResourceNotFoundException",
				"Secrets Manager can't find the specified secret value for VersionId: %s", versionID)
		}
		if stage != "" && st.Stages[stage] != versionID {
			return smValueOutput{}, errorf(400, "ResourceNotFoundException",
				"Secrets Manager can't find the specified secret value for VersionId: %s and staging label: %s", versionID, stage)
		}
	} else {
		v = st.Versions[st.Stages[stage]]
		if v == nil {
			return smValueOutput{}, errorf(400, "ResourceNotFoundException",
				"Secrets Manager can't find the specified secret value for staging label: %s", stage)
		}
	}
	day := c.now.UTC().Truncate(24 * time.Hour)
	if !st.LastAccessed.Equal(day) {
		st.LastAccessed = day
		c.dirty = true
	}
	if !v.LastAccessed.Equal(day) {
		v.LastAccessed = day
		c.dirty = true
	}
	return smValueOutput{
		ARN:           st.ARN,
		Name:          st.Name,
		VersionID:     v.ID,
		SecretString:  v.String,
		SecretBinary:  v.Binary,
		VersionStages: st.stagesOf(v.ID),
		CreatedDate:   smTime(v.Created),
	}, nil
}

func (m *secretsManager) getSecretValue(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionID    string `json:"VersionId"`
		VersionStage string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out, err := s.st.readValue(c, in.VersionID, in.VersionStage)
	if err != nil {
		return nil, err
	}
	return out, nil
}

type smPutOutput struct {
	ARN           string
	Name          string
	VersionID     string   `json:"VersionId"`
	VersionStages []string `json:",omitempty"`
}

// putValue creates a version, or accepts an idempotent retry. s.mu held.
func (m *secretsManager) putValue(c *smCall, s *smSecret, token string, str *string, bin []byte, labels []string) (smPutOutput, *apiError) {
	if token != "" {
		if v := s.st.Versions[token]; v != nil {
			if !sameValue(v, str, bin) {
				return smPutOutput{}, errorf(400, "ResourceExistsException",
					"You can't modify an existing version, you can only create a new version.")
			}
			return smPutOutput{ARN: s.st.ARN, Name: s.st.Name, VersionID: v.ID, VersionStages: s.st.stagesOf(v.ID)}, nil
		}
	}
	id := token
	for id == "" || s.st.Versions[id] != nil {
		id = m.uuid()
	}
	// AWS: "If this operation creates the first version for the secret,
	// then Secrets Manager automatically attaches the staging label
	// AWSCURRENT to it", whatever VersionStages says.
	if len(s.st.Versions) == 0 && !slices.Contains(labels, stageCurrent) {
		labels = append(slices.Clone(labels), stageCurrent)
	}
	if err := s.st.addVersion(&smVer{ID: id, String: str, Binary: bin}, labels, c.now); err != nil {
		return smPutOutput{}, err
	}
	c.dirty = true
	return smPutOutput{ARN: s.st.ARN, Name: s.st.Name, VersionID: id, VersionStages: s.st.stagesOf(id)}, nil
}

func checkStages(labels []string) *apiError {
	if len(labels) > smMaxStagesPerVer {
		return smValidation("versionStages", fmt.Sprintf("Member must have length less than or equal to %d", smMaxStagesPerVer))
	}
	for _, l := range labels {
		if l == "" || len(l) > 256 {
			return smValidation("versionStages", "Member must have length between 1 and 256")
		}
	}
	return nil
}

func (m *secretsManager) putSecretValue(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID           string `json:"SecretId"`
		ClientRequestToken string
		SecretString       *string
		SecretBinary       []byte
		VersionStages      []string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if err := checkValue(in.SecretString, in.SecretBinary, true); err != nil {
		return nil, err
	}
	if err := checkStages(in.VersionStages); err != nil {
		return nil, err
	}
	labels := in.VersionStages
	if labels == nil {
		labels = []string{stageCurrent}
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out, err := m.putValue(c, s, in.ClientRequestToken, in.SecretString, in.SecretBinary, labels)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (m *secretsManager) updateSecret(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID           string `json:"SecretId"`
		ClientRequestToken string
		Description        *string
		KmsKeyID           *string `json:"KmsKeyId"`
		SecretString       *string
		SecretBinary       []byte
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkToken(in.ClientRequestToken); err != nil {
		return nil, err
	}
	if err := checkValue(in.SecretString, in.SecretBinary, false); err != nil {
		return nil, err
	}
	if in.Description != nil && len(*in.Description) > 2048 {
		return nil, smValidation("description", "Member must have length less than or equal to 2048")
	}
	if in.KmsKeyID != nil {
		if err := m.checkKMSKey(*in.KmsKeyID); err != nil {
			return nil, err
		}
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := s.st.ref()
	if in.SecretString != nil || in.SecretBinary != nil {
		put, err := m.putValue(c, s, in.ClientRequestToken, in.SecretString, in.SecretBinary, []string{stageCurrent})
		if err != nil {
			return nil, err
		}
		out.VersionID = put.VersionID
	}
	if in.Description != nil {
		s.st.Description = *in.Description
	}
	if in.KmsKeyID != nil {
		s.st.KmsKeyID = *in.KmsKeyID
	}
	c.touch(&s.st)
	return out, nil
}

func (m *secretsManager) updateSecretVersionStage(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID            string `json:"SecretId"`
		VersionStage        string
		MoveToVersionID     string `json:"MoveToVersionId"`
		RemoveFromVersionID string `json:"RemoveFromVersionId"`
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.VersionStage == "" || len(in.VersionStage) > 256 {
		return nil, smValidation("versionStage", "Member must have length between 1 and 256")
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	st := &s.st
	for _, id := range []string{in.MoveToVersionID, in.RemoveFromVersionID} {
		if id != "" && st.Versions[id] == nil {
			return nil, errorf(400, "InvalidParameterException", "Secrets Manager can't find the specified secret version: %s", id)
		}
	}
	holder, held := st.Stages[in.VersionStage]
	if in.RemoveFromVersionID != "" && holder != in.RemoveFromVersionID {
		return nil, errorf(400, "InvalidParameterException",
			"The staging label %s isn't attached to version %s, so it can't be removed from it.", in.VersionStage, in.RemoveFromVersionID)
	}
	if held && in.MoveToVersionID != "" && holder != in.MoveToVersionID && in.RemoveFromVersionID == "" {
		return nil, errorf(400, "InvalidParameterException",
			"The parameter RemoveFromVersionId can't be empty. Staging label %s is currently attached to version %s, so you must explicitly reference that version in RemoveFromVersionId.",
			in.VersionStage, holder)
	}
	if in.MoveToVersionID == "" && in.RemoveFromVersionID == "" {
		return nil, errorf(400, "InvalidParameterException", "You must specify MoveToVersionId, RemoveFromVersionId, or both.")
	}
	if in.MoveToVersionID == "" && in.VersionStage == stageCurrent {
		return nil, errorf(400, "InvalidParameterException",
			"You can't remove the staging label AWSCURRENT from a version without moving it to another version.")
	}
	if in.MoveToVersionID != "" {
		if holder != in.MoveToVersionID {
			moveLabel(st.Stages, in.VersionStage, in.MoveToVersionID)
		}
	} else {
		delete(st.Stages, in.VersionStage)
	}
	c.touch(st)
	return st.ref(), nil
}

// smPage parses a NextToken (an opaque offset) and MaxResults.
func smPage(token string, maxResults *int, limit, def int) (offset, size int, err *apiError) {
	size = def
	if maxResults != nil {
		if *maxResults < 1 || *maxResults > limit {
			return 0, 0, smValidation("maxResults", fmt.Sprintf("Member must have value between 1 and %d", limit))
		}
		size = *maxResults
	}
	if token == "" {
		return 0, size, nil
	}
	b, decErr := base64.RawURLEncoding.DecodeString(token)
	n, convErr := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
	if decErr != nil || convErr != nil || n < 0 || !strings.HasPrefix(string(b), "o:") {
		return 0, 0, errorf(400, "InvalidNextTokenException", "The NextToken value is invalid.")
	}
	return n, size, nil
}

func smNextToken(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

// smPageOf cuts the page of at most size items at offset (see smPage) out of
// list, never nil, and the NextToken of the page after it, if any.
func smPageOf[T any](list []T, offset, size int) (page []T, next string) {
	if offset >= len(list) {
		return []T{}, ""
	}
	end := min(offset+size, len(list))
	if end < len(list) {
		next = smNextToken(end)
	}
	return list[offset:end], next
}

type smVersionEntry struct {
	VersionID        string        `json:"VersionId"`
	VersionStages    []string      `json:",omitempty"`
	CreatedDate      *epochSeconds `json:",omitempty"`
	LastAccessedDate *epochSeconds `json:",omitempty"`
	KmsKeyIDs        []string      `json:"KmsKeyIds,omitempty"`
}

func (m *secretsManager) listSecretVersionIds(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID          string `json:"SecretId"`
		MaxResults        *int
		NextToken         string
		IncludeDeprecated bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	offset, size, err := smPage(in.NextToken, in.MaxResults, smMaxListResults, smMaxListResults)
	if err != nil {
		return nil, err
	}
	s, err := m.access(c, in.SecretID, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	st := &s.st
	byVer := st.stagesByVersion()
	vers := slices.SortedFunc(maps.Values(st.Versions), func(a, b *smVer) int { return int(b.Seq - a.Seq) })
	kms := st.KmsKeyID
	if kms == "" {
		kms = "DEFAULT"
	}
	var all []smVersionEntry
	for _, v := range vers {
		if byVer[v.ID] == nil && !in.IncludeDeprecated {
			continue
		}
		all = append(all, smVersionEntry{
			VersionID:        v.ID,
			VersionStages:    byVer[v.ID],
			CreatedDate:      smTime(v.Created),
			LastAccessedDate: smTime(v.LastAccessed),
			KmsKeyIDs:        []string{kms},
		})
	}
	out := struct {
		ARN       string
		Name      string
		Versions  []smVersionEntry
		NextToken string `json:",omitempty"`
	}{ARN: st.ARN, Name: st.Name, Versions: []smVersionEntry{}}
	out.Versions, out.NextToken = smPageOf(all, offset, size)
	return out, nil
}

// checkFilters validates ListSecrets/BatchGetSecretValue filters.
func checkFilters(filters []smFilter) *apiError {
	if len(filters) > 10 {
		return smValidation("filters", "Member must have length less than or equal to 10")
	}
	for i, f := range filters {
		switch f.Key {
		case "description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all":
		default:
			return smValidation(fmt.Sprintf("filters.%d.member.key", i+1),
				"Member must satisfy enum value set: [description, name, tag-key, tag-value, primary-region, owning-service, all]")
		}
		if len(f.Values) < 1 || len(f.Values) > 10 {
			return smValidation(fmt.Sprintf("filters.%d.member.values", i+1), "Member must have length between 1 and 10")
		}
		for _, v := range f.Values {
			if len(v) > 512 {
				return smValidation(fmt.Sprintf("filters.%d.member.values", i+1), "Member must have length less than or equal to 512")
			}
		}
	}
	return nil
}

// matchesFilters applies filters as AWS documents them: filters are ANDed,
// the values of one filter ORed; a value is a prefix (case-sensitive except
// for description and all); a leading "!" negates it. s.mu held.
func (m *secretsManager) matchesFilters(st *smSecretState, filters []smFilter) bool {
	for _, f := range filters {
		var attrs []string
		fold := false
		switch f.Key {
		case "name":
			attrs = []string{st.Name}
		case "description":
			attrs, fold = []string{st.Description}, true
		case "tag-key":
			for _, t := range st.Tags {
				attrs = append(attrs, t.Key)
			}
		case "tag-value":
			for _, t := range st.Tags {
				attrs = append(attrs, t.Value)
			}
		case "primary-region":
			attrs = []string{m.region}
		case "owning-service":
			attrs = nil
		case "all":
			if !matchesAll(st, f.Values) {
				return false
			}
			continue
		}
		positive, anyPositive := false, false
		for _, v := range f.Values {
			neg := strings.HasPrefix(v, "!")
			v = strings.TrimPrefix(v, "!")
			hit := false
			for _, a := range attrs {
				if fold && strings.HasPrefix(strings.ToLower(a), strings.ToLower(v)) || !fold && strings.HasPrefix(a, v) {
					hit = true
					break
				}
			}
			if neg {
				if hit {
					return false
				}
				continue
			}
			anyPositive = true
			positive = positive || hit
		}
		if anyPositive && !positive {
			return false
		}
	}
	return true
}

// matchesAll implements the "all" filter: the values are broken into words
// and each word must be a case-insensitive prefix of a word of the name,
// description, tag keys or tag values (or, negated, of none).
func matchesAll(st *smSecretState, values []string) bool {
	var words []string
	for _, a := range []string{st.Name, st.Description} {
		words = append(words, splitWords(a)...)
	}
	for _, t := range st.Tags {
		words = append(words, splitWords(t.Key)...)
		words = append(words, splitWords(t.Value)...)
	}
	hasWord := func(w string) bool {
		for _, x := range words {
			if strings.HasPrefix(x, w) {
				return true
			}
		}
		return false
	}
	anyPositive, positive := false, false
	for _, v := range values {
		neg := strings.HasPrefix(v, "!")
		for _, w := range splitWords(strings.TrimPrefix(v, "!")) {
			if neg {
				if hasWord(w) {
					return false
				}
				continue
			}
			anyPositive = true
			positive = positive || hasWord(w)
		}
	}
	return !anyPositive || positive
}

// splitWords breaks s into lowercase words at punctuation, at a change from
// lower to upper case and between letters and digits.
func splitWords(s string) []string {
	var words []string
	var cur []rune
	kind := func(r rune) int {
		switch {
		case r >= 'a' && r <= 'z':
			return 1
		case r >= 'A' && r <= 'Z':
			return 2
		case r >= '0' && r <= '9':
			return 3
		}
		return 0
	}
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	prev := 0
	for _, r := range s {
		k := kind(r)
		switch {
		case k == 0:
			flush()
		case prev == 1 && k == 2, prev == 3 && k != 3, prev != 3 && prev != 0 && k == 3:
			flush()
		}
		if k != 0 {
			cur = append(cur, r)
		}
		prev = k
	}
	flush()
	return words
}

type smListEntry struct {
	ARN                    string
	Name                   string
	Description            string              `json:",omitempty"`
	KmsKeyID               string              `json:"KmsKeyId,omitempty"`
	Tags                   []smTag             `json:",omitempty"`
	SecretVersionsToStages map[string][]string `json:",omitempty"`
	CreatedDate            *epochSeconds       `json:",omitempty"`
	LastChangedDate        *epochSeconds       `json:",omitempty"`
	LastAccessedDate       *epochSeconds       `json:",omitempty"`
	DeletedDate            *epochSeconds       `json:",omitempty"`

	created time.Time // sort keys
	changed time.Time
	access  time.Time
}

// selectSecrets returns the secrets matching filters, in a stable order,
// with their state copied under each secret's lock.
func (m *secretsManager) selectSecrets(c *smCall, filters []smFilter, includeDeleted bool) []smListEntry {
	m.mu.RLock()
	all := slices.Collect(maps.Values(m.secrets))
	m.mu.RUnlock()
	var out []smListEntry
	var expired []*smSecret
	for _, s := range all {
		s.mu.Lock()
		switch {
		case s.gone:
		case s.expired(c.now):
			expired = append(expired, s)
		case !s.st.Deleted.IsZero() && !includeDeleted:
		case m.matchesFilters(&s.st, filters):
			d := s.st.describe()
			out = append(out, smListEntry{
				ARN: d.ARN, Name: d.Name, Description: d.Description, KmsKeyID: d.KmsKeyID, Tags: d.Tags,
				SecretVersionsToStages: d.VersionIdsToStages, CreatedDate: d.CreatedDate,
				LastChangedDate: d.LastChangedDate, LastAccessedDate: d.LastAccessedDate, DeletedDate: d.DeletedDate,
				created: s.st.Created, changed: s.st.LastChanged, access: s.st.LastAccessed,
			})
		}
		s.mu.Unlock()
	}
	if len(expired) > 0 {
		m.remove(c, expired...)
	}
	return out
}

// createdDate is ListSecrets' default sort key.
func createdDate(e *smListEntry) time.Time { return e.created }

// sortSecretList orders list by key (nil: none), then by name; desc reverses
// the whole order.
func sortSecretList(list []smListEntry, key func(*smListEntry) time.Time, desc bool) {
	slices.SortFunc(list, func(a, b smListEntry) int {
		r := 0
		if key != nil {
			r = key(&a).Compare(key(&b))
		}
		if r == 0 {
			r = strings.Compare(a.Name, b.Name)
		}
		if desc {
			r = -r
		}
		return r
	})
}

func (m *secretsManager) listSecrets(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		IncludePlannedDeletion bool
		MaxResults             *int
		NextToken              string
		Filters                []smFilter
		SortOrder              string
		SortBy                 string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if err := checkFilters(in.Filters); err != nil {
		return nil, err
	}
	offset, size, err := smPage(in.NextToken, in.MaxResults, smMaxListResults, smMaxListResults)
	if err != nil {
		return nil, err
	}
	if in.SortOrder != "" && in.SortOrder != "asc" && in.SortOrder != "desc" {
		return nil, smValidation("sortOrder", "Member must satisfy enum value set: [asc, desc]")
	}
	key := createdDate
	switch in.SortBy {
	case "", "created-date":
	case "last-changed-date":
		key = func(e *smListEntry) time.Time { return e.changed }
	case "last-accessed-date":
		key = func(e *smListEntry) time.Time { return e.access }
	case "name":
		key = nil
	default:
		return nil, smValidation("sortBy", "Member must satisfy enum value set: [created-date, last-accessed-date, last-changed-date, name]")
	}
	list := m.selectSecrets(c, in.Filters, in.IncludePlannedDeletion)
	sortSecretList(list, key, in.SortOrder == "desc")
	out := struct {
		SecretList []smListEntry
		NextToken  string `json:",omitempty"`
	}{SecretList: []smListEntry{}}
	out.SecretList, out.NextToken = smPageOf(list, offset, size)
	return out, nil
}

type smBatchError struct {
	SecretID  string `json:"SecretId"`
	ErrorCode string
	Message   string
}

func (m *secretsManager) batchGetSecretValue(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretIDList []string `json:"SecretIdList"`
		Filters      []smFilter
		MaxResults   *int
		NextToken    string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if (in.SecretIDList == nil) == (in.Filters == nil) {
		return nil, errorf(400, "InvalidParameterException", "You must include Filters or SecretIdList, but not both.")
	}
	if in.SecretIDList != nil && (in.MaxResults != nil || in.NextToken != "") {
		return nil, errorf(400, "InvalidParameterException", "MaxResults and NextToken can only be used with Filters.")
	}
	if len(in.SecretIDList) > smMaxBatchSecretID {
		return nil, smValidation("secretIdList", fmt.Sprintf("Member must have length less than or equal to %d", smMaxBatchSecretID))
	}
	if err := checkFilters(in.Filters); err != nil {
		return nil, err
	}
	out := struct {
		SecretValues []smValueOutput
		Errors       []smBatchError `json:",omitempty"`
		NextToken    string         `json:",omitempty"`
	}{SecretValues: []smValueOutput{}}
	ids := in.SecretIDList
	if in.Filters != nil {
		offset, size, err := smPage(in.NextToken, in.MaxResults, smMaxBatchResults, smMaxBatchResults)
		if err != nil {
			return nil, err
		}
		list := m.selectSecrets(c, in.Filters, false)
		sortSecretList(list, createdDate, false)
		var page []smListEntry
		page, out.NextToken = smPageOf(list, offset, size)
		ids = nil
		for _, e := range page {
			ids = append(ids, e.ARN)
		}
	}
	for _, id := range ids {
		s, err := m.access(c, id, false)
		if err == nil {
			var v smValueOutput
			v, err = s.st.readValue(c, "", "")
			s.mu.Unlock()
			if err == nil {
				out.SecretValues = append(out.SecretValues, v)
				continue
			}
		}
		out.Errors = append(out.Errors, smBatchError{SecretID: id, ErrorCode: err.Code, Message: err.Message})
	}
	return out, nil
}

func (m *secretsManager) tagResource(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID string `json:"SecretId"`
		Tags     []smTag
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.Tags == nil {
		return nil, smValidation("tags", "Member must not be null")
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	tags := mergeTags(s.st.Tags, in.Tags)
	if len(tags) > smMaxTags {
		return nil, errorf(400, "InvalidParameterException", "A secret can have at most %d tags.", smMaxTags)
	}
	s.st.Tags = tags
	c.touch(&s.st)
	return struct{}{}, nil
}

func (m *secretsManager) untagResource(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID string `json:"SecretId"`
		TagKeys  []string
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.TagKeys == nil {
		return nil, smValidation("tagKeys", "Member must not be null")
	}
	for i, k := range in.TagKeys {
		if k == "" || len(k) > 128 {
			return nil, smValidation(fmt.Sprintf("tagKeys.%d.member", i+1), "Member must have length between 1 and 128")
		}
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.st.Tags = slices.DeleteFunc(slices.Clone(s.st.Tags), func(t smTag) bool { return slices.Contains(in.TagKeys, t.Key) })
	c.touch(&s.st)
	return struct{}{}, nil
}

func (m *secretsManager) putResourcePolicy(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID          string `json:"SecretId"`
		ResourcePolicy    string
		BlockPublicPolicy bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.ResourcePolicy == "" || len(in.ResourcePolicy) > 20480 {
		return nil, smValidation("resourcePolicy", "Member must have length between 1 and 20480")
	}
	p, perr := parseSMPolicy(in.ResourcePolicy)
	if perr != nil {
		return nil, errorf(400, "MalformedPolicyDocumentException", "This resource policy contains an unsupported or malformed element: %v", perr)
	}
	if in.BlockPublicPolicy && p.public() {
		return nil, errorf(400, "PublicPolicyException", "This resource policy will grant public access to the secret.")
	}
	s, err := m.access(c, in.SecretID, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.st.Policy, s.policy = in.ResourcePolicy, p
	c.touch(&s.st)
	return s.st.ref(), nil
}

func (m *secretsManager) getResourcePolicy(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return struct {
		ARN            string
		Name           string
		ResourcePolicy string `json:",omitempty"`
	}{s.st.ARN, s.st.Name, s.st.Policy}, nil
}

func (m *secretsManager) deleteResourcePolicy(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, false)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	s.st.Policy, s.policy = "", nil
	c.touch(&s.st)
	return s.st.ref(), nil
}

type smDeleteOutput struct {
	ARN          string
	Name         string
	DeletionDate *epochSeconds
}

func (m *secretsManager) deleteSecret(c *smCall, body []byte) (any, *apiError) {
	var in struct {
		SecretID                   string `json:"SecretId"`
		RecoveryWindowInDays       *int
		ForceDeleteWithoutRecovery bool
	}
	if err := smDecode(body, &in); err != nil {
		return nil, err
	}
	if in.ForceDeleteWithoutRecovery && in.RecoveryWindowInDays != nil {
		return nil, errorf(400, "InvalidParameterException",
			"You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.")
	}
	days := smDefaultRecovery
	if in.RecoveryWindowInDays != nil {
		days = *in.RecoveryWindowInDays
		if days < 7 || days > 30 {
			return nil, errorf(400, "InvalidParameterException",
				"The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).")
		}
	}
	s, err := m.access(c, in.SecretID, true)
	if err != nil {
		return nil, err
	}
	if !in.ForceDeleteWithoutRecovery {
		defer s.mu.Unlock()
		if !s.st.Deleted.IsZero() {
			return nil, smMarkedForDeletion()
		}
		s.st.Deleted = c.now
		s.st.DeletionDate = c.now.AddDate(0, 0, days)
		c.touch(&s.st)
		return smDeleteOutput{s.st.ARN, s.st.Name, smTime(s.st.DeletionDate)}, nil
	}
	arn, name := s.st.ARN, s.st.Name
	s.mu.Unlock()
	m.remove(c, s)
	c.dirty = true
	return smDeleteOutput{arn, name, smTime(c.now)}, nil
}

func (m *secretsManager) restoreSecret(c *smCall, body []byte) (any, *apiError) {
	s, err := m.secretByID(c, body, true)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if !s.st.Deleted.IsZero() {
		s.st.Deleted, s.st.DeletionDate = time.Time{}, time.Time{}
		c.touch(&s.st)
	}
	return s.st.ref(), nil
}

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
