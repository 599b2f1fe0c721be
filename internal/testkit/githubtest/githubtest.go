// Package githubtest is a local GitHub Actions secrets API for tests: the
// public-key and secret PUT endpoints of repositories, environments and
// organizations, as GitHub documents them. It really decrypts what it is
// sent (libsodium sealed boxes) with its private key, so a test can check
// the plaintext; it can change its key pair, and fail or hang on demand
// (testkit.HTTPFaults).
package githubtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	apps    map[int64]app   // by installation id
	issued  map[string]bool // installation tokens handed out
}

// app is a GitHub App the server accepts JWTs from.
type app struct {
	id  string
	pub *rsa.PublicKey
	now func() time.Time
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
	s := &Server{token: token, secrets: map[string]Secret{}, apps: map[int64]app{}, issued: map[string]bool{}}
	s.RotateKey()
	mux := http.NewServeMux()
	for _, scope := range []string{"/repos/{owner}/{repo}/actions/secrets", "/repos/{owner}/{repo}/environments/{env}/secrets", "/orgs/{org}/actions/secrets"} {
		mux.HandleFunc("GET "+scope+"/public-key", s.publicKey)
		mux.HandleFunc("PUT "+scope+"/{name}", s.put)
	}
	mux.HandleFunc("POST /app/installations/{installation}/access_tokens", s.accessToken)
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

// App makes the server accept JWTs of the GitHub App id, signed with the
// private half of pub and valid at now(), for the installation, and hand
// out installation tokens that work like the server's token.
func (s *Server) App(id string, installation int64, pub *rsa.PublicKey, now func() time.Time) {
	s.mu.Lock()
	s.apps[installation] = app{id: id, pub: pub, now: now}
	s.mu.Unlock()
}

// accessToken checks an App's JWT as GitHub documents it (RS256, issued by
// the App, expiring within 10 minutes) and answers an installation token.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	installation, _ := strconv.ParseInt(r.PathValue("installation"), 10, 64)
	s.mu.Lock()
	a, ok := s.apps[installation]
	s.mu.Unlock()
	if !ok {
		answer(w, http.StatusNotFound, "Not Found")
		return
	}
	jwt, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if err := checkJWT(jwt, a, a.now()); err != nil {
		answer(w, http.StatusUnauthorized, "A JSON web token could not be decoded: "+err.Error())
		return
	}
	tok := make([]byte, 18)
	_, _ = rand.Read(tok)
	token := "ghs_" + base64.RawURLEncoding.EncodeToString(tok)
	s.mu.Lock()
	s.issued[token] = true
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "expires_at": a.now().Add(time.Hour).UTC().Format(time.RFC3339)})
}

func checkJWT(jwt string, a app, now time.Time) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(a.pub, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("bad signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	var claims struct {
		Iat, Exp int64
		Iss      any
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return err
	}
	switch {
	case fmt.Sprint(claims.Iss) != a.id:
		return fmt.Errorf("issuer %v", claims.Iss)
	case claims.Exp <= now.Unix() || claims.Exp-claims.Iat > 600:
		return errors.New("'Expiration time' claim ('exp') is too far in the future or in the past")
	case claims.Iat > now.Unix()+60:
		return errors.New("'Issued at' claim ('iat') must be an Integer representing a time in the past")
	}
	return nil
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
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		ok := bearer == s.token || s.issued[bearer] || strings.Contains(r.URL.Path, "/app/installations/") // the JWT is checked there
		s.mu.Unlock()
		if !ok {
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
