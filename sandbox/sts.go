package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

type getCallerIdentityResult struct {
	Arn     string `xml:"Arn"`
	UserID  string `xml:"UserId"`
	Account string `xml:"Account"`
}

type assumeRoleResult struct {
	Credentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string `xml:"SecretAccessKey"`
		SessionToken    string `xml:"SessionToken"`
		Expiration      string `xml:"Expiration"`
	} `xml:"Credentials"`
	AssumedRoleUser struct {
		AssumedRoleID string `xml:"AssumedRoleId"`
		Arn           string `xml:"Arn"`
	} `xml:"AssumedRoleUser"`
	PackedPolicySize int `xml:"PackedPolicySize"`
}

// handleSTS serves STS: GetCallerIdentity (the signature check and the
// last-use record already happened in the dispatcher) and AssumeRole.
func (s *Server) handleSTS(caller principal, op string, form url.Values) (any, *apiError) {
	switch op {
	case "GetCallerIdentity":
		if caller.Session != "" {
			return getCallerIdentityResult{Arn: caller.ARN, UserID: roleID(caller.Account, caller.Role) + ":" + caller.Session, Account: caller.Account}, nil
		}
		arn, userID := s.org.get(caller.Account).iam.whoami(caller)
		return getCallerIdentityResult{Arn: arn, UserID: userID, Account: caller.Account}, nil
	case "AssumeRole":
		return s.assumeRole(caller, form)
	}
	return nil, errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version 2011-06-15", op)
}

// roleGone denies the call of a session whose role was deleted since it
// was handed out, as AWS does: the session keeps its identity
// (GetCallerIdentity needs no permission) but has no permissions left.
func (s *Server) roleGone(c *call) *apiError {
	if c.caller.Session == "" || c.op == "GetCallerIdentity" {
		return nil
	}
	if _, ok := s.org.role(c.caller.Account); ok {
		return nil
	}
	msg := fmt.Sprintf("User: %s is not authorized to perform: %s:%s because no identity-based policy allows the %[2]s:%[3]s action", c.caller.ARN, c.service, c.op)
	switch c.service {
	case svcSecretsManager, svcOrganizations:
		return errorf(http.StatusBadRequest, "AccessDeniedException", "%s", msg)
	case svcSES:
		return errorf(http.StatusForbidden, "AccessDeniedException", "%s", msg)
	}
	return errorf(http.StatusForbidden, "AccessDenied", "%s", msg)
}

// assumedRoleARN is the ARN of a role session, as STS names it.
func assumedRoleARN(account, role, session string) string {
	return "arn:aws:sts::" + account + ":assumed-role/" + role + "/" + session
}

// roleID is a role's unique id (AROA…), derived from its account and name
// so that it is the same across restarts.
func roleID(account, role string) string {
	sum := sha256.Sum256([]byte(account + "/" + role))
	return "AROA" + base32.StdEncoding.EncodeToString(sum[:])[:17]
}

// validExternalID reports whether id is a valid sts:ExternalId: 2..1224
// characters of [\w+=,.@:/-].
func validExternalID(id string) bool {
	if len(id) < 2 || len(id) > 1224 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_+=,.@:/-", r)) {
			return false
		}
	}
	return true
}

func stsValidation(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

// assumeRole checks the request against the role's trust policy (the
// management account, and the ExternalId when the role requires one) and
// hands out temporary credentials that expire on the sandbox's clock.
func (s *Server) assumeRole(caller principal, form url.Values) (any, *apiError) {
	roleARN, err := required(form, "RoleArn")
	if err != nil {
		return nil, err
	}
	session, err := required(form, "RoleSessionName")
	if err != nil {
		return nil, err
	}
	if len(roleARN) < 20 || len(roleARN) > 2048 {
		return nil, stsValidation("1 validation error detected: Value '%s' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20", roleARN)
	}
	if len(session) < 2 || !isValidName(session, 64) {
		return nil, stsValidation("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64", session)
	}
	duration := defaultMaxSessionSeconds * time.Second
	if v := form.Get("DurationSeconds"); v != "" {
		n, convErr := strconv.Atoi(v)
		if convErr != nil || n < 900 || n > 43200 {
			return nil, stsValidation("1 validation error detected: Value '%s' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", v)
		}
		duration = time.Duration(n) * time.Second
	}
	externalID := form.Get("ExternalId")
	if externalID != "" && !validExternalID(externalID) {
		return nil, stsValidation("1 validation error detected: Value '%s' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]* and have length between 2 and 1224", externalID)
	}

	denied := errorf(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller.ARN, roleARN)
	account, role, ok := parseRoleARN(roleARN)
	if !ok {
		return nil, stsValidation("%s is invalid", roleARN)
	}
	target := s.org.get(account)
	trust, exists := s.org.role(account)
	switch {
	case !caller.Admin: // an IAM user of the sandbox has no identity policy granting sts:AssumeRole
		return nil, denied
	case target == nil || role != MemberRoleName || !exists:
		return nil, denied
	case caller.Account != s.org.management().ID: // the trust policy names the management account only
		return nil, denied
	case trust.ExternalID != "" && externalID != trust.ExternalID:
		return nil, denied
	}
	if duration > trust.maxSession() {
		return nil, stsValidation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}
	sess := s.sts.issue(account, role, session, s.clock.Now().Add(duration))
	var res assumeRoleResult
	res.Credentials.AccessKeyID = sess.AccessKeyID
	res.Credentials.SecretAccessKey = sess.Secret
	res.Credentials.SessionToken = sess.Token
	res.Credentials.Expiration = awsTime(sess.Expires)
	res.AssumedRoleUser.AssumedRoleID = roleID(account, role) + ":" + session
	res.AssumedRoleUser.Arn = assumedRoleARN(account, role, session)
	return res, nil
}

// parseRoleARN reads arn:aws:iam::<account>:role/<path><name>.
func parseRoleARN(arn string) (account, name string, ok bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "iam" || parts[3] != "" {
		return "", "", false
	}
	res, found := strings.CutPrefix(parts[5], "role/")
	if !found || res == "" {
		return "", "", false
	}
	return parts[4], res[strings.LastIndex(res, "/")+1:], true
}

// stsSession is one set of temporary credentials AssumeRole handed out.
type stsSession struct {
	AccessKeyID string    `json:"access_key_id"`
	Secret      string    `json:"secret"`
	Token       string    `json:"token"`
	Account     string    `json:"account"`
	Role        string    `json:"role"`
	Session     string    `json:"session"`
	Expires     time.Time `json:"expires"`
}

// sessionRetention is how long an expired session is remembered, so that
// its use is answered ExpiredToken rather than InvalidClientTokenId.
const sessionRetention = 12 * time.Hour

// stsSessions holds the role sessions. Safe for concurrent use.
type stsSessions struct {
	clock   Clock
	changed func()

	mu        sync.Mutex
	rng       *rand.Rand
	seed      int64
	generated uint64
	byKey     map[string]*stsSession
}

func newSTSSessions(clock Clock, seed int64, changed func()) *stsSessions {
	t := &stsSessions{clock: clock, changed: changed, seed: seed}
	t.reset(0)
	return t
}

func (t *stsSessions) reset(generated uint64) {
	t.rng = rand.New(rand.NewPCG(uint64(t.seed), 0x575^generated))
	t.generated = generated
	t.byKey = map[string]*stsSession{}
}

func (t *stsSessions) randString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[t.rng.IntN(len(alphabet))]
	}
	return string(b)
}

// issue creates a session, forgetting those long expired.
func (t *stsSessions) issue(account, role, session string, expires time.Time) stsSession {
	t.mu.Lock()
	now := t.clock.Now()
	for k, s := range t.byKey {
		if now.Sub(s.Expires) > sessionRetention {
			delete(t.byKey, k)
		}
	}
	t.generated++
	var id string
	for {
		id = "ASIA" + t.randString(base32Alphabet, 16)
		if _, taken := t.byKey[id]; !taken {
			break
		}
	}
	s := &stsSession{
		AccessKeyID: id,
		Secret:      t.randString(secretAlphabet, 40),
		Token:       "IQoJb3JpZ2luX2VjE" + t.randString(secretAlphabet, 300),
		Account:     account, Role: role, Session: session,
		Expires: expires.UTC().Truncate(time.Second),
	}
	t.byKey[id] = s
	t.mu.Unlock()
	t.changed()
	return *s
}

// Outcomes of a session lookup.
const (
	sessionValid = iota
	sessionUnknown
	sessionExpired
)

// lookup finds the session of akid carrying token.
func (t *stsSessions) lookup(akid, token string, now time.Time) (stsSession, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byKey[akid]
	if !ok || token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(s.Token)) != 1 {
		return stsSession{}, sessionUnknown
	}
	if !now.Before(s.Expires) {
		return *s, sessionExpired
	}
	return *s, sessionValid
}

type stsState struct {
	Generated uint64        `json:"generated"`
	Sessions  []*stsSession `json:"sessions"`
}

func (t *stsSessions) snapshot() (json.RawMessage, error) {
	t.mu.Lock()
	st := stsState{Generated: t.generated}
	for _, s := range t.byKey {
		st.Sessions = append(st.Sessions, s)
	}
	b, err := json.Marshal(st)
	t.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("sts: encode snapshot: %w", err)
	}
	return b, nil
}

func (t *stsSessions) restore(raw json.RawMessage) error {
	var st stsState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("sts: decode snapshot: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reset(st.Generated)
	for _, s := range st.Sessions {
		t.byKey[s.AccessKeyID] = s
	}
	return nil
}
