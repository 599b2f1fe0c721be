package ui_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/fleet"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/testkit/fleettest"
	"github.com/keyrot/keyrot/ui"
)

// site is the API server with the UI mounted, over a fleettest world.
type site struct {
	t      *testing.T
	world  *fleettest.World
	server *keyrothttp.Server
	http   *httptest.Server
	// keys: "admin" sees every user; "team" sees alice and b*.
	adminKey, teamKey   string
	adminHash, teamHash string
}

// keys are the API keys the server accepts: admin, then team.
func (s *site) keys() []keyrothttp.APIKey {
	return []keyrothttp.APIKey{
		{Name: "admin", Hash: s.adminHash, Users: []string{"*"}, List: true},
		{Name: "team", Hash: s.teamHash, Users: []string{fleettest.Adopted, "b*"}},
	}
}

func newSite(t *testing.T, tls bool) *site {
	t.Helper()
	w := fleettest.New(t)
	s := &site{t: t, world: w}
	var err error
	if s.adminKey, s.adminHash, err = keyrothttp.GenerateAPIKey(); err != nil {
		t.Fatal(err)
	}
	if s.teamKey, s.teamHash, err = keyrothttp.GenerateAPIKey(); err != nil {
		t.Fatal(err)
	}
	mount, err := app.MountUI(ui.Config{
		Source: fleet.NewCached(w.Observer, 30*time.Second, w.Clock),
		Events: w.Events, Clock: w.Clock, SessionTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := keyrothttp.NewCache(w.App.Store, w.App.Rotator.Policy(), keyrothttp.WithCacheClock(w.Clock))
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{RateLimit: -1, Keys: s.keys()}, cache, keyrothttp.WithClock(w.Clock), mount)
	if err != nil {
		t.Fatal(err)
	}
	s.server = srv
	if tls {
		s.http = httptest.NewTLSServer(srv.Handler())
	} else {
		s.http = httptest.NewServer(srv.Handler())
	}
	t.Cleanup(s.http.Close)
	return s
}

// client is an HTTP client that keeps cookies and does not follow
// redirects, so tests see each answer.
func (s *site) client() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		s.t.Fatal(err)
	}
	c := s.http.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// get fetches path with the given headers and returns the response and body.
func (s *site) get(c *http.Client, path string, header ...string) (*http.Response, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.http.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.do(c, req)
}

// post submits a form to path from the site's own origin, unless header
// says otherwise.
func (s *site) post(c *http.Client, path string, form url.Values, header ...string) (*http.Response, string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.http.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.do(c, req)
}

func (s *site) do(c *http.Client, req *http.Request) (*http.Response, string) {
	s.t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, string(b)
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }
