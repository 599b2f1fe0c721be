package http

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// AccountCaches holds one Cache per AWS account, for a server that serves
// the keys of several accounts (accounts in keyrot's config). It is safe
// for concurrent use; accounts may be added while the server runs.
type AccountCaches struct {
	mu        sync.RWMutex
	byAccount map[string]*Cache
}

// NewAccountCaches returns an empty set.
func NewAccountCaches() *AccountCaches { return &AccountCaches{byAccount: map[string]*Cache{}} }

// Add serves account's keys from c.
func (a *AccountCaches) Add(account string, c *Cache) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byAccount[account] = c
}

// Cache returns the account's cache.
func (a *AccountCaches) Cache(account string) (*Cache, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	c, ok := a.byAccount[account]
	return c, ok
}

// sorted returns the accounts and their caches, by account id.
func (a *AccountCaches) sorted() ([]string, []*Cache) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	ids := make([]string, 0, len(a.byAccount))
	for id := range a.byAccount {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	caches := make([]*Cache, len(ids))
	for i, id := range ids {
		caches[i] = a.byAccount[id]
	}
	return ids, caches
}

// WithAccounts makes the server serve the keys of several accounts:
// GET /credentials/{account}/{user} reads one account's cache, GET
// /credentials/{user} the one account holding the user (409 naming the
// accounts when several do), and GET /credentials lists every account's
// users, each with its "Account". The server's own cache then serves
// nothing. An API key's user patterns apply in every account.
func WithAccounts(a *AccountCaches) ServerOption { return func(s *Server) { s.accounts = a } }

// ambiguousUser: the user name is managed in more than one account.
type ambiguousUser struct{ accounts []string }

func (e *ambiguousUser) Error() string {
	return fmt.Sprintf("this user is managed in several accounts (%s): use /credentials/{account}/{user}", strings.Join(e.accounts, ", "))
}

var accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)

// handleAccountCredentials serves GET /credentials/{account}/{user}.
func (s *Server) handleAccountCredentials(w http.ResponseWriter, r *http.Request) {
	s.serveCredentials(w, r, r.PathValue("account"), true)
}

// cacheFor is the cache holding user, and its account: the server's own
// (no account) without accounts; with them, account's (when named) or the
// only account's holding user.
func (s *Server) cacheFor(account string, named bool, user string) (*Cache, string, error) {
	if s.accounts == nil {
		if named {
			return nil, "", errNotFound // keyrot works in its own account only
		}
		return s.cache, "", nil
	}
	if named {
		if !accountIDPattern.MatchString(account) {
			return nil, "", &badRequest{"invalid AWS account id: want 12 digits"}
		}
		c, ok := s.accounts.Cache(account)
		if !ok {
			return nil, account, errNotManaged
		}
		return c, account, nil
	}
	ids, caches := s.accounts.sorted()
	var found []string
	var in *Cache
	for i, c := range caches {
		if !c.Ready() {
			return nil, "", errNotReady // the user may be there
		}
		if _, ok := c.getEntry(user); ok {
			found, in = append(found, ids[i]), c
		}
	}
	switch len(found) {
	case 0:
		return nil, "", errNotManaged
	case 1:
		return in, found[0], nil
	}
	return nil, "", &ambiguousUser{found}
}

// accountEntries appends every account's entries the key may read to body,
// each object with an "Account" member first, and returns the oldest age.
func (s *Server) accountEntries(body []byte, r *http.Request, key *APIKey, format string) ([]byte, time.Duration, error) {
	ids, caches := s.accounts.sorted()
	n := 0
	var oldest time.Duration
	for i, c := range caches {
		if !c.Ready() {
			return nil, 0, errNotReady
		}
		for _, e := range c.entries() {
			if !key.Allows(e.creds.UserName) {
				continue
			}
			oldest = max(oldest, c.age(e))
			if n > 0 {
				body = append(body, ',')
			}
			body = append(body, `{"Account":"`+ids[i]+`",`...)
			body = append(body, e.json[1:len(e.json)-1]...) // without its "{" and newline
			n++
			s.metrics.CacheHit()
			s.auditRead(nil, r, key.Name, ids[i]+"/"+e.creds.UserName, e.creds.AccessKeyID, format, "granted")
		}
	}
	return body, oldest, nil
}
