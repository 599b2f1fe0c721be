// Package githubtest is a local GitHub Actions secrets API for tests: the
// public-key and secret PUT endpoints of repositories, environments and
// organizations, as GitHub documents them. It really decrypts what it is
// sent (libsodium sealed boxes) with its private key, so a test can check
// the plaintext; it can change its key pair, and fail or hang on demand
// (testkit.HTTPFaults).
package githubtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/nacl/box"

	"github.com/keyrot/keyrot/internal/testkit"
)

// Server is a fake GitHub REST API for Actions secrets.
type Server struct {
	// URL is github.com-style (no path); URL+"/api/v3" serves the same
	// API the way GitHub Enterprise Server does.
	URL   string
	token string

	// HTTPFaults records the requests, and fails or hangs them on demand.
	testkit.HTTPFaults

	mu      sync.Mutex
	pub     *[32]byte
	priv    *[32]byte
	keyID   string
	keys    int
	secrets map[string]Secret
}

// Secret is a secret as stored: decrypted, with the org secret's visibility.
type Secret struct {
	Value                 string
	Visibility            string
	SelectedRepositoryIDs []int64
}

// Start serves the API until the test ends. Requests must carry
// "Authorization: Bearer <token>".
func Start(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{token: token, secrets: map[string]Secret{}}
	s.RotateKey()
	mux := http.NewServeMux()
	for _, scope := range []string{"/repos/{owner}/{repo}/actions/secrets", "/repos/{owner}/{repo}/environments/{env}/secrets", "/orgs/{org}/actions/secrets"} {
		mux.HandleFunc("GET "+scope+"/public-key", s.publicKey)
		mux.HandleFunc("PUT "+scope+"/{name}", s.put)
	}
	root := http.NewServeMux()
	root.Handle("/api/v3/", http.StripPrefix("/api/v3", mux))
	root.Handle("/", mux)
	srv := httptest.NewServer(s.Wrap(s.auth(root), func(w http.ResponseWriter, code int) { answer(w, code, http.StatusText(code)) }))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// RotateKey replaces the key pair, as GitHub may at any time: a PUT
// encrypted with the old one is refused with 422.
func (s *Server) RotateKey() {
	pub, priv, err := box.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys++
	s.pub, s.priv, s.keyID = pub, priv, fmt.Sprintf("568250167242549%03d", s.keys)
}

// Secret returns a stored secret by its path under the API, such as
// "repos/acme/app/AWS_ACCESS_KEY_ID",
// "repos/acme/app/environments/prod/AWS_ACCESS_KEY_ID" or
// "orgs/acme/AWS_ACCESS_KEY_ID".
func (s *Server) Secret(path string) (Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.secrets[path]
	return v, ok
}

// auth checks the token and the API version, as GitHub does.
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.token {
			answer(w, http.StatusUnauthorized, "Bad credentials")
			return
		}
		if v := r.Header.Get("X-GitHub-Api-Version"); v != "" && v != "2022-11-28" {
			answer(w, http.StatusBadRequest, "Unsupported 'X-GitHub-Api-Version' header")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) publicKey(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	body := map[string]string{"key_id": s.keyID, "key": base64.StdEncoding.EncodeToString(s.pub[:])}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(body)
}

// secretName is GitHub's rule: letters, digits and underscores, not
// starting with a digit or GITHUB_.
var secretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !secretName.MatchString(name) || strings.HasPrefix(strings.ToUpper(name), "GITHUB_") {
		answer(w, http.StatusUnprocessableEntity, "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_).")
		return
	}
	var body struct {
		EncryptedValue        string  `json:"encrypted_value"`
		KeyID                 string  `json:"key_id"`
		Visibility            string  `json:"visibility"`
		SelectedRepositoryIDs []int64 `json:"selected_repository_ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		answer(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	org := r.PathValue("org") != ""
	switch {
	case body.EncryptedValue == "" || body.KeyID == "":
		answer(w, http.StatusUnprocessableEntity, "Invalid request. encrypted_value and key_id are required.")
		return
	case org && body.Visibility != "all" && body.Visibility != "private" && body.Visibility != "selected":
		answer(w, http.StatusUnprocessableEntity, "Invalid request. visibility must be all, private or selected.")
		return
	case org && body.Visibility != "selected" && body.SelectedRepositoryIDs != nil:
		answer(w, http.StatusUnprocessableEntity, "Invalid request. selected_repository_ids requires visibility selected.")
		return
	}
	sealed, err := base64.StdEncoding.DecodeString(body.EncryptedValue)
	s.mu.Lock()
	defer s.mu.Unlock()
	if body.KeyID != s.keyID {
		answer(w, http.StatusUnprocessableEntity, "Bad request: the key_id does not match the current public key")
		return
	}
	plain, ok := box.OpenAnonymous(nil, sealed, s.pub, s.priv)
	if err != nil || !ok {
		answer(w, http.StatusUnprocessableEntity, "Bad request: could not decrypt the encrypted_value")
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	path = strings.Replace(strings.Replace(path, "/actions/secrets/", "/", 1), "/secrets/", "/", 1)
	_, existed := s.secrets[path]
	s.secrets[path] = Secret{Value: string(plain), Visibility: body.Visibility, SelectedRepositoryIDs: body.SelectedRepositoryIDs}
	if existed {
		w.WriteHeader(http.StatusNoContent)
	} else {
		w.WriteHeader(http.StatusCreated)
	}
}

func answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg, "documentation_url": "https://docs.github.com/rest/actions/secrets"})
}
