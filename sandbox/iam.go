package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxKeysPerUser is IAM's AccessKeysPerUser quota.
const maxKeysPerUser = 2

// iamService is IAM: users, groups, access keys.
type iamService struct {
	clock   Clock
	account string
	seed    int64
	changed func()
	// used is told of a last-use record: persisted in the background, as
	// AWS itself updates last-used dates lazily. Defaults to changed.
	used func()
	// propagation is how long a key created now waits before STS and
	// signature checks accept it.
	propagation func() time.Duration

	mu        sync.RWMutex
	rng       *rand.Rand
	generated uint64               // ids generated so far, persisted to reseed after a restart
	users     map[string]*iamUser  // by lower-case name
	userOrder []string             // lower-case names, sorted
	groups    map[string]*iamGroup // by lower-case name
	keys      map[string]*iamKey   // by access key id

	report      *credentialReport // the last credential report (not persisted)
	reportDelay time.Duration     // how long generating a report takes, on clock
	deleted     []IssuedKey       // keys deleted since the sandbox started
}

// IssuedKey is an access key the sandbox has handed out, as
// GET /_sandbox/iam/access-keys lists it, so a test can check that a secret
// never shows where it must not (logs, emails, metrics).
type IssuedKey struct {
	UserName        string    `json:"user_name"`
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	Status          string    `json:"status"`
	Created         time.Time `json:"created"`
	// Deleted: the key was deleted since the sandbox started (keys deleted
	// before a restart are not remembered).
	Deleted bool `json:"deleted,omitempty"`
	// Account is the account of the key's user.
	Account string `json:"account"`
}

type iamTag struct {
	Key   string `json:"key" xml:"Key"`
	Value string `json:"value" xml:"Value"`
}

type iamUser struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Path    string    `json:"path"`
	Created time.Time `json:"created"`
	Tags    []iamTag  `json:"tags,omitempty"`
	Keys    []string  `json:"keys,omitempty"`   // access key ids, oldest first
	Groups  []string  `json:"groups,omitempty"` // group names
}

type iamGroup struct {
	Name    string    `json:"name"`
	ID      string    `json:"id"`
	Path    string    `json:"path"`
	Created time.Time `json:"created"`
	Members []string  `json:"members,omitempty"` // lower-case user names, in order added
}

type iamKey struct {
	ID          string     `json:"id"`
	Secret      string     `json:"secret"`
	User        string     `json:"user"` // lower-case user name
	Status      string     `json:"status"`
	Created     time.Time  `json:"created"`
	LastUsed    *time.Time `json:"last_used,omitempty"`
	LastService string     `json:"last_service,omitempty"`
	LastRegion  string     `json:"last_region,omitempty"`
	// Propagated is when the key is first accepted: its CreateDate plus the
	// propagation delay in force when it was created. A key accepted once
	// stays accepted, as in IAM, whatever the delay becomes later. Zero (a
	// state file written before this field) means at once.
	Propagated time.Time `json:"propagated,omitempty"`
}

func newIAM(clock Clock, account string, seed int64, changed func()) *iamService {
	m := &iamService{clock: clock, account: account, seed: seed, changed: changed, used: changed,
		propagation: func() time.Duration { return 0 }}
	m.reset(0)
	return m
}

func (m *iamService) reset(generated uint64) {
	m.rng = rand.New(rand.NewPCG(uint64(m.seed), 0x1a3^generated))
	m.generated = generated
	m.users = map[string]*iamUser{}
	m.userOrder = nil
	m.groups = map[string]*iamGroup{}
	m.keys = map[string]*iamKey{}
}

func (m *iamService) userARN(u *iamUser) string {
	return "arn:aws:iam::" + m.account + ":user" + u.Path + u.Name
}

func (m *iamService) groupARN(g *iamGroup) string {
	return "arn:aws:iam::" + m.account + ":group" + g.Path + g.Name
}

const base32Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
const secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// randString draws n characters of alphabet. Call with m.mu held.
func (m *iamService) randString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[m.rng.IntN(len(alphabet))]
	}
	return string(b)
}

func (m *iamService) newID(prefix string) string {
	m.generated++
	return prefix + m.randString(base32Alphabet, 17)
}

// credential looks up an access key for authentication: it must exist, be
// Active and have propagated (Propagated <= now).
func (m *iamService) credential(akid string, now time.Time) (secret string, p principal, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, found := m.keys[akid]
	if !found || k.Status != "Active" || now.Before(k.Propagated) {
		return "", principal{}, false
	}
	u := m.users[k.User]
	return k.Secret, principal{AccessKeyID: akid, UserName: u.Name, ARN: m.userARN(u), Account: m.account}, true
}

// recordUse records a successful authenticated call made with akid.
func (m *iamService) recordUse(akid string, now time.Time, service, region string) {
	m.mu.Lock()
	if k, ok := m.keys[akid]; ok {
		t := now.UTC()
		k.LastUsed, k.LastService, k.LastRegion = &t, service, region
	}
	m.mu.Unlock()
	m.used()
}

// whoami returns the caller's identity for STS.
func (m *iamService) whoami(p principal) (arn, userID string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if u, ok := m.users[strings.ToLower(p.UserName)]; ok && !p.Admin {
		return m.userARN(u), u.ID
	}
	return rootARN(m.account), m.account
}

// --- XML shapes -------------------------------------------------------------

type members[T any] struct {
	Member []T `xml:"member"`
}

type xmlUser struct {
	Path       string   `xml:"Path,omitempty"`
	UserName   string   `xml:"UserName,omitempty"`
	UserID     string   `xml:"UserId"`
	Arn        string   `xml:"Arn"`
	CreateDate string   `xml:"CreateDate"`
	Tags       []iamTag `xml:"Tags>member,omitempty"`
}

type xmlGroup struct {
	Path       string `xml:"Path"`
	GroupName  string `xml:"GroupName"`
	GroupID    string `xml:"GroupId"`
	Arn        string `xml:"Arn"`
	CreateDate string `xml:"CreateDate"`
}

type xmlKeyMeta struct {
	UserName    string `xml:"UserName"`
	AccessKeyID string `xml:"AccessKeyId"`
	Status      string `xml:"Status"`
	CreateDate  string `xml:"CreateDate"`
}

type xmlAccessKey struct {
	UserName        string `xml:"UserName"`
	AccessKeyID     string `xml:"AccessKeyId"`
	Status          string `xml:"Status"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	CreateDate      string `xml:"CreateDate"`
}

type userResult struct {
	User xmlUser `xml:"User"`
}

// truncation ends every paginated result: the Marker of the next page, if any.
type truncation struct {
	IsTruncated bool   `xml:"IsTruncated"`
	Marker      string `xml:"Marker,omitempty"`
}

func nextPage(marker string) truncation {
	return truncation{IsTruncated: marker != "", Marker: marker}
}

type listUsersResult struct {
	Users members[xmlUser] `xml:"Users"`
	truncation
}

type listUserTagsResult struct {
	Tags members[iamTag] `xml:"Tags"`
	truncation
}

type groupResult struct {
	Group xmlGroup `xml:"Group"`
}

type getGroupResult struct {
	Group xmlGroup         `xml:"Group"`
	Users members[xmlUser] `xml:"Users"`
	truncation
}

type listGroupsForUserResult struct {
	Groups members[xmlGroup] `xml:"Groups"`
	truncation
}

type createAccessKeyResult struct {
	AccessKey xmlAccessKey `xml:"AccessKey"`
}

type listAccessKeysResult struct {
	AccessKeyMetadata members[xmlKeyMeta] `xml:"AccessKeyMetadata"`
	truncation
}

type accessKeyLastUsedResult struct {
	UserName          string `xml:"UserName"`
	AccessKeyLastUsed struct {
		LastUsedDate string `xml:"LastUsedDate,omitempty"`
		ServiceName  string `xml:"ServiceName"`
		Region       string `xml:"Region"`
	} `xml:"AccessKeyLastUsed"`
}

func (m *iamService) xmlUser(u *iamUser, withTags bool) xmlUser {
	x := xmlUser{Path: u.Path, UserName: u.Name, UserID: u.ID, Arn: m.userARN(u), CreateDate: awsTime(u.Created)}
	if withTags {
		x.Tags = u.Tags
	}
	return x
}

func (m *iamService) xmlGroup(g *iamGroup) xmlGroup {
	return xmlGroup{Path: g.Path, GroupName: g.Name, GroupID: g.ID, Arn: m.groupARN(g), CreateDate: awsTime(g.Created)}
}

// --- dispatch -----------------------------------------------------------------

// selfService reports whether an IAM user may call op on its own user and
// keys; everything else needs the admin key.
func selfService(op string) bool {
	switch op {
	case "GetUser", "CreateAccessKey", "ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey", "GetAccessKeyLastUsed":
		return true
	}
	return false
}

type iamOp func(caller principal, form url.Values) (any, *apiError)

func (m *iamService) op(name string) iamOp {
	switch name {
	case "CreateUser":
		return m.createUser
	case "GetUser":
		return m.getUser
	case "ListUsers":
		return m.listUsers
	case "DeleteUser":
		return m.deleteUser
	case "TagUser":
		return m.tagUser
	case "UntagUser":
		return m.untagUser
	case "ListUserTags":
		return m.listUserTags
	case "CreateGroup":
		return m.createGroup
	case "GetGroup":
		return m.getGroup
	case "DeleteGroup":
		return m.deleteGroup
	case "AddUserToGroup":
		return m.addUserToGroup
	case "RemoveUserFromGroup":
		return m.removeUserFromGroup
	case "ListGroupsForUser":
		return m.listGroupsForUser
	case "CreateAccessKey":
		return m.createAccessKey
	case "ListAccessKeys":
		return m.listAccessKeys
	case "UpdateAccessKey":
		return m.updateAccessKey
	case "DeleteAccessKey":
		return m.deleteAccessKey
	case "GetAccessKeyLastUsed":
		return m.getAccessKeyLastUsed
	case "GenerateCredentialReport":
		return m.generateCredentialReport
	case "GetCredentialReport":
		return m.getCredentialReport
	case "GetAccountAuthorizationDetails":
		return m.getAccountAuthorizationDetails
	}
	return nil
}

// handle runs one IAM operation. resp is the XML <OpResult> body, or nil.
func (m *iamService) handle(caller principal, op string, form url.Values) (any, *apiError) {
	if v := form.Get("Version"); v != "" && v != "2010-05-08" {
		return nil, errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", op, v)
	}
	fn := m.op(op)
	if fn == nil {
		return nil, errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version 2010-05-08", op)
	}
	if !caller.Admin {
		if !selfService(op) {
			return nil, accessDenied(caller, op, "*")
		}
		if name := form.Get("UserName"); name != "" && !strings.EqualFold(name, caller.UserName) {
			return nil, accessDenied(caller, op, "arn:aws:iam::"+m.account+":user/"+name)
		}
		if op == "GetAccessKeyLastUsed" || op == "UpdateAccessKey" || op == "DeleteAccessKey" {
			if owner := m.keyOwner(form.Get("AccessKeyId")); owner != "" && !strings.EqualFold(owner, caller.UserName) {
				return nil, accessDenied(caller, op, "arn:aws:iam::"+m.account+":user/"+owner)
			}
		}
	}
	return fn(caller, form)
}

func accessDenied(caller principal, op, resource string) *apiError {
	return errorf(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: iam:%s on resource: %s", caller.ARN, op, resource)
}

func (m *iamService) keyOwner(akid string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if k, ok := m.keys[akid]; ok {
		return m.users[k.User].Name
	}
	return ""
}

// --- parameters ---------------------------------------------------------------

func required(form url.Values, name string) (string, *apiError) {
	v, ok := form[name]
	if !ok || len(v) == 0 {
		return "", errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter %s", name)
	}
	return v[0], nil
}

func validationError(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationError", format, args...)
}

func userName(form url.Values, param string) (string, *apiError) {
	name, err := required(form, param)
	if err != nil {
		return "", err
	}
	if !isValidName(name, 64) {
		return "", validationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and 64", name, lowerFirst(param))
	}
	return name, nil
}

func groupName(form url.Values) (string, *apiError) {
	name, err := required(form, "GroupName")
	if err != nil {
		return "", err
	}
	if !isValidName(name, 128) {
		return "", validationError("1 validation error detected: Value '%s' at 'groupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and 128", name)
	}
	return name, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// iamPath reads a Path parameter (default "/"): it must begin and end with
// "/" and hold printable ASCII.
func iamPath(form url.Values, param string, prefix bool) (string, *apiError) {
	p := form.Get(param)
	if p == "" {
		return "/", nil
	}
	ok := len(p) <= 512 && strings.HasPrefix(p, "/") && (prefix || strings.HasSuffix(p, "/"))
	for _, r := range p {
		if r < 0x21 || r > 0x7e {
			ok = false
		}
	}
	if !ok {
		return "", validationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007F]+\\u002F)", p, lowerFirst(param))
	}
	return p, nil
}

func maxItems(form url.Values) (int, *apiError) {
	v := form.Get("MaxItems")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, validationError("1 validation error detected: Value '%s' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 1000", v)
	}
	return n, nil
}

// paginate cuts the sorted keys into the page that starts at the form's
// Marker. Markers are opaque: the base64 of the first key of the page.
func paginate(sorted []string, form url.Values) (page []string, next string, err *apiError) {
	n, err := maxItems(form)
	if err != nil {
		return nil, "", err
	}
	start := 0
	if mk := form.Get("Marker"); mk != "" {
		b, decErr := base64.RawURLEncoding.DecodeString(mk)
		if decErr != nil {
			return nil, "", validationError("Invalid Marker.")
		}
		start, _ = slices.BinarySearch(sorted, string(b))
	}
	end := min(start+n, len(sorted))
	if end < len(sorted) {
		next = base64.RawURLEncoding.EncodeToString([]byte(sorted[end]))
	}
	return sorted[start:end], next, nil
}

// paginateIndex is paginate for lists kept in insertion order: the marker is
// the index of the first item of the page.
func paginateIndex(total int, form url.Values) (start, end int, next string, err *apiError) {
	n, err := maxItems(form)
	if err != nil {
		return 0, 0, "", err
	}
	if mk := form.Get("Marker"); mk != "" {
		b, decErr := base64.RawURLEncoding.DecodeString(mk)
		i, convErr := strconv.Atoi(string(b))
		if decErr != nil || convErr != nil || i < 0 {
			return 0, 0, "", validationError("Invalid Marker.")
		}
		start = min(i, total)
	}
	end = min(start+n, total)
	if end < total {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return start, end, next, nil
}

// render turns items into a list of members, never nil.
func render[S, T any](items []S, fn func(S) T) members[T] {
	out := members[T]{Member: make([]T, 0, len(items))}
	for _, it := range items {
		out.Member = append(out.Member, fn(it))
	}
	return out
}

// pageOf renders the page of items, a list kept in insertion order, that the
// form's Marker and MaxItems select (see paginateIndex).
func pageOf[S, T any](items []S, form url.Values, fn func(S) T) (members[T], truncation, *apiError) {
	start, end, next, err := paginateIndex(len(items), form)
	if err != nil {
		return members[T]{}, truncation{}, err
	}
	return render(items[start:end], fn), nextPage(next), nil
}

func iamParseTags(form url.Values) ([]iamTag, *apiError) {
	var tags []iamTag
	for _, item := range queryList(form, "Tags.member", "Key", "Value") {
		k := item["Key"]
		if len(k) < 1 || len(k) > 128 {
			return nil, validationError("1 validation error detected: Value '%s' at 'tags.member.key' failed to satisfy constraint: Member must have length between 1 and 128", k)
		}
		if len(item["Value"]) > 256 {
			return nil, validationError("1 validation error detected: Value at 'tags.member.value' failed to satisfy constraint: Member must have length less than or equal to 256")
		}
		tags = append(tags, iamTag{Key: k, Value: item["Value"]})
	}
	return tags, nil
}

// iamMergeTags applies tags over existing ones (same key: new value), keeping
// AWS's limit of 50 tags per user.
func iamMergeTags(existing, tags []iamTag) ([]iamTag, *apiError) {
	out := slices.Clone(existing)
	for _, t := range tags {
		i := slices.IndexFunc(out, func(e iamTag) bool { return e.Key == t.Key })
		if i >= 0 {
			out[i].Value = t.Value
		} else {
			out = append(out, t)
		}
	}
	if len(out) > 50 {
		return nil, errorf(http.StatusConflict, "LimitExceeded", "Cannot exceed quota for TagsPerUser: 50")
	}
	return out, nil
}

// --- users --------------------------------------------------------------------

func noSuchUser(name string) *apiError {
	return errorf(http.StatusNotFound, "NoSuchEntity", "The user with name %s cannot be found.", name)
}

func noSuchGroup(name string) *apiError {
	return errorf(http.StatusNotFound, "NoSuchEntity", "The group with name %s cannot be found.", name)
}

func noSuchKey(id string) *apiError {
	return errorf(http.StatusNotFound, "NoSuchEntity", "The Access Key with id %s cannot be found.", id)
}

// lookupUser finds a user by name, in any case. Call with m.mu held.
func (m *iamService) lookupUser(name string) (*iamUser, *apiError) {
	u, ok := m.users[strings.ToLower(name)]
	if !ok {
		return nil, noSuchUser(name)
	}
	return u, nil
}

// lookupGroup finds a group by name, in any case. Call with m.mu held.
func (m *iamService) lookupGroup(name string) (*iamGroup, *apiError) {
	g, ok := m.groups[strings.ToLower(name)]
	if !ok {
		return nil, noSuchGroup(name)
	}
	return g, nil
}

// readUser runs fn on the user called name under the read lock.
func (m *iamService) readUser(name string, fn func(u *iamUser) (any, *apiError)) (any, *apiError) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u, err := m.lookupUser(name)
	if err != nil {
		return nil, err
	}
	return fn(u)
}

// updateUser runs fn on the user called name under the write lock and, if fn
// succeeds, reports the change. The operation has no result.
func (m *iamService) updateUser(name string, fn func(u *iamUser) *apiError) (any, *apiError) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, err := m.lookupUser(name)
	if err != nil {
		return nil, err
	}
	if err := fn(u); err != nil {
		return nil, err
	}
	m.changed()
	return nil, nil
}

// listedUser renders the user with lower-case name key as lists show it:
// without tags. Call with m.mu held.
func (m *iamService) listedUser(key string) xmlUser {
	return m.xmlUser(m.users[key], false)
}

// callerUser resolves the UserName parameter, defaulting to the caller's own
// user. Call with m.mu held.
func (m *iamService) callerUser(caller principal, form url.Values, op string) (*iamUser, *apiError) {
	name := form.Get("UserName")
	if name == "" {
		if caller.Admin {
			return nil, validationError("Must specify userName when calling %s with the sandbox admin (root) credentials", op)
		}
		name = caller.UserName
	} else if !isValidName(name, 64) {
		return nil, validationError("1 validation error detected: Value '%s' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and 64", name)
	}
	return m.lookupUser(name)
}

func (m *iamService) createUser(_ principal, form url.Values) (any, *apiError) {
	name, err := userName(form, "UserName")
	if err != nil {
		return nil, err
	}
	path, err := iamPath(form, "Path", false)
	if err != nil {
		return nil, err
	}
	tags, err := iamParseTags(form)
	if err != nil {
		return nil, err
	}
	if tags, err = iamMergeTags(nil, tags); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := strings.ToLower(name)
	if _, ok := m.users[key]; ok {
		return nil, errorf(http.StatusConflict, "EntityAlreadyExists", "User with name %s already exists.", name)
	}
	u := &iamUser{Name: name, ID: m.newID("AIDA"), Path: path, Created: m.clock.Now().UTC(), Tags: tags}
	m.users[key] = u
	i, _ := slices.BinarySearch(m.userOrder, key)
	m.userOrder = slices.Insert(m.userOrder, i, key)
	m.changed()
	return userResult{User: m.xmlUser(u, true)}, nil
}

func (m *iamService) getUser(caller principal, form url.Values) (any, *apiError) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if form.Get("UserName") == "" && caller.Session != "" {
		return nil, validationError("Must specify userName when calling with non-User credentials")
	}
	if form.Get("UserName") == "" && caller.Admin {
		return userResult{User: xmlUser{UserID: m.account, Arn: rootARN(m.account), CreateDate: awsTime(time.Unix(0, 0))}}, nil
	}
	u, err := m.callerUser(caller, form, "GetUser")
	if err != nil {
		return nil, err
	}
	return userResult{User: m.xmlUser(u, true)}, nil
}

func (m *iamService) listUsers(_ principal, form url.Values) (any, *apiError) {
	prefix, err := iamPath(form, "PathPrefix", true)
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	names := m.userOrder
	if prefix != "/" {
		names = nil
		for _, n := range m.userOrder {
			if strings.HasPrefix(m.users[n].Path, prefix) {
				names = append(names, n)
			}
		}
	}
	page, next, err := paginate(names, form)
	if err != nil {
		return nil, err
	}
	return listUsersResult{Users: render(page, m.listedUser), truncation: nextPage(next)}, nil
}

func (m *iamService) deleteUser(_ principal, form url.Values) (any, *apiError) {
	name, err := userName(form, "UserName")
	if err != nil {
		return nil, err
	}
	return m.updateUser(name, func(u *iamUser) *apiError {
		if len(u.Keys) > 0 {
			return errorf(http.StatusConflict, "DeleteConflict", "Cannot delete entity, must delete access keys first.")
		}
		if len(u.Groups) > 0 {
			return errorf(http.StatusConflict, "DeleteConflict", "Cannot delete entity, must remove users from group first.")
		}
		key := strings.ToLower(name)
		delete(m.users, key)
		if i, found := slices.BinarySearch(m.userOrder, key); found {
			m.userOrder = slices.Delete(m.userOrder, i, i+1)
		}
		return nil
	})
}

func (m *iamService) tagUser(_ principal, form url.Values) (any, *apiError) {
	name, err := userName(form, "UserName")
	if err != nil {
		return nil, err
	}
	tags, err := iamParseTags(form)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter Tags")
	}
	return m.updateUser(name, func(u *iamUser) *apiError {
		merged, err := iamMergeTags(u.Tags, tags)
		if err != nil {
			return err
		}
		u.Tags = merged
		return nil
	})
}

func (m *iamService) untagUser(_ principal, form url.Values) (any, *apiError) {
	name, err := userName(form, "UserName")
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, item := range queryList(form, "TagKeys.member") {
		keys = append(keys, item[""])
	}
	if len(keys) == 0 {
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter TagKeys")
	}
	return m.updateUser(name, func(u *iamUser) *apiError {
		u.Tags = slices.DeleteFunc(u.Tags, func(t iamTag) bool { return slices.Contains(keys, t.Key) })
		return nil
	})
}

func (m *iamService) listUserTags(_ principal, form url.Values) (any, *apiError) {
	name, err := userName(form, "UserName")
	if err != nil {
		return nil, err
	}
	return m.readUser(name, func(u *iamUser) (any, *apiError) {
		tags, more, err := pageOf(u.Tags, form, func(t iamTag) iamTag { return t })
		if err != nil {
			return nil, err
		}
		return listUserTagsResult{Tags: tags, truncation: more}, nil
	})
}

// --- groups -------------------------------------------------------------------

func (m *iamService) createGroup(_ principal, form url.Values) (any, *apiError) {
	name, err := groupName(form)
	if err != nil {
		return nil, err
	}
	path, err := iamPath(form, "Path", false)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := strings.ToLower(name)
	if _, ok := m.groups[key]; ok {
		return nil, errorf(http.StatusConflict, "EntityAlreadyExists", "Group with name %s already exists.", name)
	}
	g := &iamGroup{Name: name, ID: m.newID("AGPA"), Path: path, Created: m.clock.Now().UTC()}
	m.groups[key] = g
	m.changed()
	return groupResult{Group: m.xmlGroup(g)}, nil
}

func (m *iamService) getGroup(_ principal, form url.Values) (any, *apiError) {
	name, err := groupName(form)
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	g, err := m.lookupGroup(name)
	if err != nil {
		return nil, err
	}
	users, more, err := pageOf(g.Members, form, m.listedUser)
	if err != nil {
		return nil, err
	}
	return getGroupResult{Group: m.xmlGroup(g), Users: users, truncation: more}, nil
}

func (m *iamService) deleteGroup(_ principal, form url.Values) (any, *apiError) {
	name, err := groupName(form)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, err := m.lookupGroup(name)
	if err != nil {
		return nil, err
	}
	if len(g.Members) > 0 {
		return nil, errorf(http.StatusConflict, "DeleteConflict", "Cannot delete entity, must remove users from group first.")
	}
	delete(m.groups, strings.ToLower(name))
	m.changed()
	return nil, nil
}

// membership reads the GroupName and UserName of AddUserToGroup and
// RemoveUserFromGroup.
func membership(form url.Values) (gname, uname string, err *apiError) {
	if gname, err = groupName(form); err != nil {
		return "", "", err
	}
	if uname, err = userName(form, "UserName"); err != nil {
		return "", "", err
	}
	return gname, uname, nil
}

func (m *iamService) addUserToGroup(_ principal, form url.Values) (any, *apiError) {
	gname, uname, err := membership(form)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, err := m.lookupGroup(gname)
	if err != nil {
		return nil, err
	}
	u, err := m.lookupUser(uname)
	if err != nil {
		return nil, err
	}
	if ukey := strings.ToLower(uname); !slices.Contains(g.Members, ukey) {
		g.Members = append(g.Members, ukey)
		u.Groups = append(u.Groups, strings.ToLower(g.Name))
		m.changed()
	}
	return nil, nil
}

func (m *iamService) removeUserFromGroup(_ principal, form url.Values) (any, *apiError) {
	gname, uname, err := membership(form)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	gkey, ukey := strings.ToLower(gname), strings.ToLower(uname)
	g, err := m.lookupGroup(gname)
	if err != nil {
		return nil, err
	}
	u, ok := m.users[ukey]
	if !ok || !slices.Contains(g.Members, ukey) {
		return nil, noSuchUser(uname)
	}
	g.Members = slices.DeleteFunc(g.Members, func(n string) bool { return n == ukey })
	u.Groups = slices.DeleteFunc(u.Groups, func(n string) bool { return n == gkey })
	m.changed()
	return nil, nil
}

func (m *iamService) listGroupsForUser(_ principal, form url.Values) (any, *apiError) {
	name, err := userName(form, "UserName")
	if err != nil {
		return nil, err
	}
	return m.readUser(name, func(u *iamUser) (any, *apiError) {
		groups, more, err := pageOf(u.Groups, form, func(key string) xmlGroup { return m.xmlGroup(m.groups[key]) })
		if err != nil {
			return nil, err
		}
		return listGroupsForUserResult{Groups: groups, truncation: more}, nil
	})
}

// --- access keys --------------------------------------------------------------

func (m *iamService) createAccessKey(caller principal, form url.Values) (any, *apiError) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, err := m.callerUser(caller, form, "CreateAccessKey")
	if err != nil {
		return nil, err
	}
	if len(u.Keys) >= maxKeysPerUser {
		return nil, errorf(http.StatusConflict, "LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: %d", maxKeysPerUser)
	}
	var id string
	for {
		m.generated++
		id = "AKIA" + m.randString(base32Alphabet, 16)
		if _, taken := m.keys[id]; !taken {
			break
		}
	}
	now := m.clock.Now().UTC()
	k := &iamKey{
		ID:         id,
		Secret:     m.randString(secretAlphabet, 40),
		User:       strings.ToLower(u.Name),
		Status:     "Active",
		Created:    now,
		Propagated: now.Add(m.propagation()),
	}
	m.keys[id] = k
	u.Keys = append(u.Keys, id)
	m.changed()
	return createAccessKeyResult{AccessKey: xmlAccessKey{
		UserName: u.Name, AccessKeyID: k.ID, Status: k.Status, SecretAccessKey: k.Secret, CreateDate: awsTime(k.Created),
	}}, nil
}

func (m *iamService) listAccessKeys(caller principal, form url.Values) (any, *apiError) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if form.Get("UserName") == "" && caller.Admin {
		res := listAccessKeysResult{}
		res.AccessKeyMetadata.Member = []xmlKeyMeta{}
		return res, nil // the root user has no access keys here
	}
	u, err := m.callerUser(caller, form, "ListAccessKeys")
	if err != nil {
		return nil, err
	}
	keys, more, err := pageOf(u.Keys, form, func(id string) xmlKeyMeta {
		k := m.keys[id]
		return xmlKeyMeta{UserName: u.Name, AccessKeyID: k.ID, Status: k.Status, CreateDate: awsTime(k.Created)}
	})
	if err != nil {
		return nil, err
	}
	return listAccessKeysResult{AccessKeyMetadata: keys, truncation: more}, nil
}

// userKey finds the key named by AccessKeyId, belonging to UserName (or to
// the caller). Call with m.mu held.
func (m *iamService) userKey(caller principal, form url.Values) (*iamUser, *iamKey, *apiError) {
	id, err := required(form, "AccessKeyId")
	if err != nil {
		return nil, nil, err
	}
	if len(id) < 16 || len(id) > 128 {
		return nil, nil, validationError("1 validation error detected: Value '%s' at 'accessKeyId' failed to satisfy constraint: Member must have length greater than or equal to 16", id)
	}
	k, ok := m.keys[id]
	var u *iamUser
	if form.Get("UserName") != "" || !caller.Admin {
		u, err = m.callerUser(caller, form, "")
		if err != nil {
			return nil, nil, err
		}
	} else if ok {
		u = m.users[k.User]
	}
	if !ok || u == nil || k.User != strings.ToLower(u.Name) {
		return nil, nil, noSuchKey(id)
	}
	return u, k, nil
}

func (m *iamService) updateAccessKey(caller principal, form url.Values) (any, *apiError) {
	status, err := required(form, "Status")
	if err != nil {
		return nil, err
	}
	if status != "Active" && status != "Inactive" {
		return nil, validationError("1 validation error detected: Value '%s' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]", status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, k, err := m.userKey(caller, form)
	if err != nil {
		return nil, err
	}
	k.Status = status
	m.changed()
	return nil, nil
}

func (m *iamService) deleteAccessKey(caller principal, form url.Values) (any, *apiError) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, k, err := m.userKey(caller, form)
	if err != nil {
		return nil, err
	}
	delete(m.keys, k.ID)
	u.Keys = slices.DeleteFunc(u.Keys, func(id string) bool { return id == k.ID })
	m.deleted = append(m.deleted, IssuedKey{UserName: u.Name, AccessKeyID: k.ID, SecretAccessKey: k.Secret,
		Status: k.Status, Created: k.Created, Deleted: true})
	m.changed()
	return nil, nil
}

func (m *iamService) getAccessKeyLastUsed(_ principal, form url.Values) (any, *apiError) {
	id, err := required(form, "AccessKeyId")
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	k, ok := m.keys[id]
	if !ok {
		return nil, noSuchKey(id)
	}
	var res accessKeyLastUsedResult
	res.UserName = m.users[k.User].Name
	res.AccessKeyLastUsed.ServiceName, res.AccessKeyLastUsed.Region = "N/A", "N/A"
	if k.LastUsed != nil {
		res.AccessKeyLastUsed.LastUsedDate = awsTime(*k.LastUsed)
		res.AccessKeyLastUsed.ServiceName, res.AccessKeyLastUsed.Region = k.LastService, k.LastRegion
	}
	return res, nil
}

// issuedKeys lists every key that exists and every key deleted since the
// sandbox started, by creation date (then id).
func (m *iamService) issuedKeys() []IssuedKey {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := append([]IssuedKey{}, m.deleted...)
	for _, k := range m.keys {
		out = append(out, IssuedKey{UserName: m.users[k.User].Name, AccessKeyID: k.ID, SecretAccessKey: k.Secret,
			Status: k.Status, Created: k.Created})
	}
	for i := range out {
		out[i].Account = m.account
	}
	sortIssuedKeys(out)
	return out
}

// sortIssuedKeys sorts keys by creation date, then id.
func sortIssuedKeys(keys []IssuedKey) {
	slices.SortFunc(keys, func(a, b IssuedKey) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.AccessKeyID, b.AccessKeyID)
	})
}

// --- persistence --------------------------------------------------------------

type iamState struct {
	Generated uint64      `json:"generated"`
	Users     []*iamUser  `json:"users"`
	Groups    []*iamGroup `json:"groups"`
	Keys      []*iamKey   `json:"keys"`
}

func (m *iamService) snapshot() (json.RawMessage, error) {
	m.mu.RLock()
	st := iamState{Generated: m.generated}
	for _, n := range m.userOrder {
		st.Users = append(st.Users, m.users[n])
	}
	for _, g := range m.groups {
		st.Groups = append(st.Groups, g)
	}
	for _, k := range m.keys {
		st.Keys = append(st.Keys, k)
	}
	b, err := json.Marshal(st) // under the lock: the entities are shared
	m.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("iam: encode snapshot: %w", err)
	}
	return b, nil
}

func (m *iamService) restore(raw json.RawMessage) error {
	var st iamState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("iam: decode snapshot: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset(st.Generated)
	for _, u := range st.Users {
		key := strings.ToLower(u.Name)
		m.users[key] = u
		m.userOrder = append(m.userOrder, key)
	}
	slices.Sort(m.userOrder)
	for _, g := range st.Groups {
		m.groups[strings.ToLower(g.Name)] = g
	}
	for _, k := range st.Keys {
		if _, ok := m.users[k.User]; !ok {
			return fmt.Errorf("iam: snapshot: access key %q belongs to unknown user %q", k.ID, k.User)
		}
		m.keys[k.ID] = k
	}
	return nil
}
