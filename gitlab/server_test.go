package gitlab_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/keyrot/keyrot/internal/testkit"
)

// fakeGitLab serves GitLab's project- and group-level CI/CD variables API
// (/api/v4/{projects,groups}/:id/variables) as GitLab documents it: ids or
// URL-encoded paths, one variable per key and environment scope, updates
// selected with filter[environment_scope], 404 for a missing variable,
// 400 for a taken key or a value that cannot be masked.
type fakeGitLab struct {
	url   string
	token string

	testkit.HTTPFaults

	mu     sync.Mutex
	owners map[string]string // "projects/42" and "projects/acme/app" -> "projects/42"
	vars   map[string][]gitlabVar
}

type gitlabVar struct {
	Key              string `json:"key"`
	Value            string `json:"value"`
	VariableType     string `json:"variable_type"`
	Protected        bool   `json:"protected"`
	Masked           bool   `json:"masked"`
	Raw              bool   `json:"raw"`
	EnvironmentScope string `json:"environment_scope"`
}

func startGitLab(t *testing.T, token string) *fakeGitLab {
	t.Helper()
	g := &fakeGitLab{token: token, vars: map[string][]gitlabVar{}, owners: map[string]string{
		"projects/42": "projects/42", "projects/acme/app": "projects/42",
		"groups/7": "groups/7", "groups/acme": "groups/7",
	}}
	srv := httptest.NewServer(g.Wrap(http.HandlerFunc(g.serve), func(w http.ResponseWriter, code int) {
		reply(w, code, map[string]any{"message": fmt.Sprintf("%d %s", code, http.StatusText(code))})
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/api/v4"
	return g
}

// variables returns the variables of an owner ("projects/42", "groups/7").
func (g *fakeGitLab) variables(owner string) []gitlabVar {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gitlabVar(nil), g.vars[owner]...)
}

func (g *fakeGitLab) seed(owner string, v gitlabVar) {
	g.mu.Lock()
	g.vars[owner] = append(g.vars[owner], v)
	g.mu.Unlock()
}

var (
	variablesPath = regexp.MustCompile(`^/api/v4/(projects|groups)/([^/]+)/variables(?:/([^/]+))?$`)
	variableKey   = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)
	maskable      = regexp.MustCompile(`^[A-Za-z0-9+/=@:.~_-]{8,}$`)
)

func (g *fakeGitLab) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("PRIVATE-TOKEN") != g.token && r.Header.Get("Authorization") != "Bearer "+g.token {
		reply(w, http.StatusUnauthorized, map[string]any{"message": "401 Unauthorized"})
		return
	}
	m := variablesPath.FindStringSubmatch(r.URL.EscapedPath())
	if m == nil {
		reply(w, http.StatusNotFound, map[string]any{"error": "404 Not Found"})
		return
	}
	id, err := url.PathUnescape(m[2])
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]any{"error": "id is invalid"})
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	owner, ok := g.owners[m[1]+"/"+id]
	if !ok {
		reply(w, http.StatusNotFound, map[string]any{"message": "404 " + strings.TrimSuffix(strings.ToUpper(m[1][:1])+m[1][1:], "s") + " Not Found"})
		return
	}
	var body gitlabVar
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		reply(w, http.StatusBadRequest, map[string]any{"error": "body is invalid"})
		return
	}
	if body.EnvironmentScope == "" {
		body.EnvironmentScope = "*"
	}
	if body.Masked && !maskable.MatchString(body.Value) {
		reply(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"value": {"is invalid"}}})
		return
	}
	list := g.vars[owner]
	find := func(key, scope string) int {
		for i, v := range list {
			if v.Key == key && (scope == "" || v.EnvironmentScope == scope) {
				return i
			}
		}
		return -1
	}
	switch {
	case r.Method == http.MethodPut && m[3] != "":
		i := find(m[3], r.URL.Query().Get("filter[environment_scope]"))
		if i < 0 {
			reply(w, http.StatusNotFound, map[string]any{"message": "404 Variable Not Found"})
			return
		}
		body.Key = m[3]
		list[i] = body
		reply(w, http.StatusOK, body)
	case r.Method == http.MethodPost && m[3] == "":
		if !variableKey.MatchString(body.Key) {
			reply(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"key": {"can contain only letters, digits and '_'."}}})
			return
		}
		if find(body.Key, body.EnvironmentScope) >= 0 {
			reply(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"key": {fmt.Sprintf("(%s) has already been taken", body.Key)}}})
			return
		}
		g.vars[owner] = append(list, body)
		reply(w, http.StatusCreated, body)
	default:
		reply(w, http.StatusMethodNotAllowed, map[string]any{"error": "405 Not Allowed"})
	}
}

func reply(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
