package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemberRoleName is the role every member account of the sandbox's
// Organization holds, which the management account may assume.
const MemberRoleName = "keyrot-member"

// MemberRoleARN is the ARN of the keyrot-member role of account id.
func MemberRoleARN(id string) string { return "arn:aws:iam::" + id + ":role/" + MemberRoleName }

// The Organization's fixed ids, in AWS's formats (r-…, ou-<root>-…).
const (
	orgRootID   = "r-root"
	orgProdOU   = "ou-root-prod0001"
	orgDevOU    = "ou-root-dev00001"
	memberIDMin = 100000000000 // member i has the id memberIDMin+i
)

// maxMemberAccounts bounds Options.MemberAccounts: each account holds its
// own services in memory.
const maxMemberAccounts = 1000

// defaultMaxSessionSeconds is a role's MaxSessionDuration unless set: one
// hour, as IAM's default.
const defaultMaxSessionSeconds = 3600

// Account is one account of the sandbox, as GET /_sandbox/accounts lists it.
type Account struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// OU is the account's parent: an OU id for a member, the root id
	// (r-root) for the management account.
	OU string `json:"ou"`
	// Management marks the account whose credentials are the admin's.
	Management bool `json:"management,omitempty"`
}

// MemberRole is the keyrot-member role of a member account: it trusts the
// management account and, when ExternalID is set, only callers that pass it.
type MemberRole struct {
	// ExternalID, when set, is the sts:ExternalId the trust policy requires.
	ExternalID string `json:"external_id,omitempty"`
	// MaxSessionSeconds is the role's MaxSessionDuration (900..43200).
	// Zero means 3600.
	MaxSessionSeconds int `json:"max_session_seconds,omitempty"`
}

func (r MemberRole) validate() error {
	if r.MaxSessionSeconds != 0 && (r.MaxSessionSeconds < 900 || r.MaxSessionSeconds > 43200) {
		return fmt.Errorf("max_session_seconds %d: must be between 900 and 43200", r.MaxSessionSeconds)
	}
	if r.ExternalID != "" && !validExternalID(r.ExternalID) {
		return fmt.Errorf("external_id: must be 2 to 1224 characters of [\\w+=,.@:/-]")
	}
	return nil
}

func (r MemberRole) maxSession() time.Duration {
	if r.MaxSessionSeconds == 0 {
		return defaultMaxSessionSeconds * time.Second
	}
	return time.Duration(r.MaxSessionSeconds) * time.Second
}

// account is one account's services: its IAM and Secrets Manager.
type account struct {
	Account
	email  string
	joined time.Time
	iam    *iamService
	sm     *secretsManager
}

// organization is the sandbox's accounts: the management account first,
// then the members, and the member roles' state.
type organization struct {
	id       string // o-…
	accounts []*account
	byID     map[string]*account
	changed  func()

	mu    sync.RWMutex
	roles map[string]*MemberRole // by member account id; absent: the role was deleted
}

// memberAccounts lists the member accounts for n members: ids 100000000001…,
// names member-1…, odd members in the prod OU and even ones in the dev OU.
func memberAccounts(n int) []Account {
	out := make([]Account, 0, n)
	for i := 1; i <= n; i++ {
		ou := orgProdOU
		if i%2 == 0 {
			ou = orgDevOU
		}
		out = append(out, Account{ID: strconv.Itoa(memberIDMin + i), Name: "member-" + strconv.Itoa(i), OU: ou})
	}
	return out
}

// newOrganization builds the accounts. newServices makes one account's
// IAM and Secrets Manager; i is 0 for the management account.
func newOrganization(opts Options, changed func(), newServices func(i int, id string) (*iamService, *secretsManager)) (*organization, error) {
	list := []Account{{ID: opts.AccountID, Name: "management", OU: orgRootID, Management: true}}
	list = append(list, memberAccounts(opts.MemberAccounts)...)
	o := &organization{id: "o-" + padID(opts.AccountID), byID: map[string]*account{}, changed: changed, roles: map[string]*MemberRole{}}
	role := MemberRole{ExternalID: opts.MemberExternalID}
	if err := role.validate(); err != nil {
		return nil, fmt.Errorf("member role: %w", err)
	}
	// The organization was created when the clock starts, a day ago.
	joined := opts.Clock.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)
	for i, a := range list {
		if _, dup := o.byID[a.ID]; dup {
			return nil, fmt.Errorf("account id %s: the management account and a member have the same id", a.ID)
		}
		iam, sm := newServices(i, a.ID)
		acct := &account{Account: a, email: a.Name + "@sandbox.keyrot.invalid", joined: joined, iam: iam, sm: sm}
		o.accounts = append(o.accounts, acct)
		o.byID[a.ID] = acct
		if !a.Management {
			r := role
			o.roles[a.ID] = &r
		}
	}
	return o, nil
}

// padID makes the organization's id suffix from the management account id:
// 10 or more characters of [a-z0-9].
func padID(id string) string {
	for len(id) < 10 {
		id += "0"
	}
	return id
}

func (o *organization) management() *account { return o.accounts[0] }

// get returns the account with id, or nil.
func (o *organization) get(id string) *account { return o.byID[id] }

// members reports whether the sandbox serves an Organization (member accounts).
func (o *organization) members() bool { return len(o.accounts) > 1 }

// list returns every account, the management account first.
func (o *organization) list() []Account {
	out := make([]Account, 0, len(o.accounts))
	for _, a := range o.accounts {
		out = append(out, a.Account)
	}
	return out
}

// role returns the member role of account id, if it exists.
func (o *organization) role(id string) (MemberRole, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	r, ok := o.roles[id]
	if !ok {
		return MemberRole{}, false
	}
	return *r, true
}

// errNoMember is returned for an account id that is not a member account.
var errNoMember = errors.New("no such member account")

// setRole creates or replaces the member role of account id.
func (o *organization) setRole(id string, r MemberRole) error {
	a := o.get(id)
	if a == nil || a.Management {
		return fmt.Errorf("account %q: %w", id, errNoMember)
	}
	if err := r.validate(); err != nil {
		return err
	}
	o.mu.Lock()
	o.roles[id] = &r
	o.mu.Unlock()
	o.changed()
	return nil
}

// deleteRole deletes the member role of account id (a "role missing" test).
func (o *organization) deleteRole(id string) error {
	a := o.get(id)
	if a == nil || a.Management {
		return fmt.Errorf("account %q: %w", id, errNoMember)
	}
	o.mu.Lock()
	delete(o.roles, id)
	o.mu.Unlock()
	o.changed()
	return nil
}

// --- persistence --------------------------------------------------------------

// membersState is the persisted state of the member accounts (the
// management account's services keep their own top-level keys, so a state
// file from a single-account sandbox still loads).
type membersState struct {
	Accounts map[string]memberState `json:"accounts"`
}

type memberState struct {
	IAM            json.RawMessage `json:"iam"`
	SecretsManager json.RawMessage `json:"secretsmanager"`
	Role           *MemberRole     `json:"role"` // nil: deleted
}

// membersPersistence saves and restores the member accounts.
type membersPersistence struct{ o *organization }

func (p membersPersistence) snapshot() (json.RawMessage, error) {
	st := membersState{Accounts: map[string]memberState{}}
	for _, a := range p.o.accounts[1:] {
		iam, err := a.iam.snapshot()
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", a.ID, err)
		}
		sm, err := a.sm.snapshot()
		if err != nil {
			return nil, fmt.Errorf("account %s: %w", a.ID, err)
		}
		ms := memberState{IAM: iam, SecretsManager: sm}
		if r, ok := p.o.role(a.ID); ok {
			ms.Role = &r
		}
		st.Accounts[a.ID] = ms
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("accounts: encode snapshot: %w", err)
	}
	return b, nil
}

func (p membersPersistence) restore(raw json.RawMessage) error {
	var st membersState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("accounts: decode snapshot: %w", err)
	}
	ids := make([]string, 0, len(st.Accounts))
	for id := range st.Accounts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		a := p.o.get(id)
		if a == nil || a.Management {
			return fmt.Errorf("accounts: the state holds member account %s, which this sandbox does not serve: start it with as many member accounts (--accounts) as it had", id)
		}
		ms := st.Accounts[id]
		if err := a.iam.restore(ms.IAM); err != nil {
			return fmt.Errorf("account %s: %w", id, err)
		}
		if err := a.sm.restore(ms.SecretsManager); err != nil {
			return fmt.Errorf("account %s: %w", id, err)
		}
		p.o.mu.Lock()
		if ms.Role == nil {
			delete(p.o.roles, id)
		} else {
			r := *ms.Role
			p.o.roles[id] = &r
		}
		p.o.mu.Unlock()
	}
	return nil
}

// checkKMSKey refuses a KMS key ARN (key or alias) of another account: each
// account's secrets are encrypted with that account's keys (a key of
// another account would need a key policy granting it, which the sandbox
// does not model). Key ids and alias names are the account's own.
func (m *secretsManager) checkKMSKey(id string) *apiError {
	parts := strings.SplitN(id, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && parts[2] == "kms" && parts[4] != m.accountID {
		return errorf(400, "AccessDeniedException", "Access to KMS is not allowed")
	}
	return nil
}
