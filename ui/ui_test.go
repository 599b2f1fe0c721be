package ui_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/fleet"
	"github.com/keyrot/keyrot/internal/testkit/fleettest"
	"github.com/keyrot/keyrot/ui"
)

var everyone = []string{fleettest.Adopted, fleettest.Fresh, fleettest.Exempt, fleettest.Other, fleettest.Missing}

func TestWithoutCredentials(t *testing.T) {
	s := newSite(t, false)
	c := s.client()
	resp, _ := s.get(c, "/ui", "Accept", "text/html,application/xhtml+xml")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Errorf("a browser without credentials: %d to %q, want 303 to /ui/login", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/ui", "/ui/users/" + fleettest.Adopted} {
		resp, body := s.get(c, path)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s without credentials: %d (WWW-Authenticate %q), want 401 with a Bearer challenge", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		for _, u := range everyone {
			if strings.Contains(body, u) {
				t.Errorf("GET %s without credentials names user %s", path, u)
			}
		}
	}
	for _, key := range []string{"krt_not-a-key", s.teamKey + "x"} {
		if resp, _ := s.get(c, "/ui", bearer(key)...); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a wrong bearer key: %d, want 401", resp.StatusCode)
		}
	}
	resp, _ = s.get(c, "/ui/login")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the login page: %d, want 200", resp.StatusCode)
	}
	if resp, _ := s.get(c, "/ui/static/style.css"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("the style sheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestBearerSeesEveryUserInScope(t *testing.T) {
	s := newSite(t, false)
	c := s.client()
	resp, body := s.get(c, "/ui", bearer(s.adminKey)...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui as admin: %d\n%s", resp.StatusCode, body)
	}
	for _, u := range everyone {
		if !strings.Contains(body, `data-user="`+u+`"`) {
			t.Errorf("admin's fleet page lacks user %s", u)
		}
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: CSP %q, Cache-Control %q", csp, resp.Header.Get("Cache-Control"))
	}

	resp, body = s.get(c, "/ui", bearer(s.teamKey)...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ui as team: %d", resp.StatusCode)
	}
	for _, u := range []string{fleettest.Adopted, fleettest.Fresh} {
		if !strings.Contains(body, `data-user="`+u+`"`) {
			t.Errorf("team's fleet page lacks user %s, in its scope", u)
		}
	}
	for _, u := range []string{fleettest.Exempt, fleettest.Other, fleettest.Missing} {
		if strings.Contains(body, u) {
			t.Errorf("team's fleet page names %s, outside its scope", u)
		}
	}
	if !strings.Contains(body, "<b>2</b> managed") || !strings.Contains(body, "<b>0</b> exempt") {
		t.Errorf("team's counts include users outside its scope")
	}
}

func TestUserPageScope(t *testing.T) {
	s := newSite(t, false)
	c := s.client()
	resp, body := s.get(c, "/ui/users/"+fleettest.Adopted, bearer(s.teamKey)...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's page as team: %d", resp.StatusCode)
	}
	for _, want := range []string{`id="timeline"`, `class="key"`, "made current", "key_deactivated", "deactivated (or first seen inactive)"} {
		if !strings.Contains(body, want) {
			t.Errorf("alice's page lacks %q", want)
		}
	}
	// Out of scope and nonexistent look the same: a key cannot probe.
	respOut, outBody := s.get(c, "/ui/users/"+fleettest.Other, bearer(s.teamKey)...)
	respNone, noneBody := s.get(c, "/ui/users/nobody", bearer(s.teamKey)...)
	if respOut.StatusCode != http.StatusNotFound || respNone.StatusCode != http.StatusNotFound {
		t.Errorf("out of scope: %d, nonexistent: %d; want 404 for both", respOut.StatusCode, respNone.StatusCode)
	}
	if outBody != noneBody {
		t.Errorf("a user out of scope and one that does not exist get different pages")
	}
	if strings.Contains(outBody, "AKIA") {
		t.Errorf("the page for a user out of scope shows a key id")
	}
	if resp, _ := s.get(c, "/ui/users/"+fleettest.Other, bearer(s.adminKey)...); resp.StatusCode != http.StatusOK {
		t.Errorf("dave's page as admin: %d, want 200", resp.StatusCode)
	}
}

func TestLoginSession(t *testing.T) {
	s := newSite(t, false)
	c := s.client()
	resp, body := s.post(c, "/ui/login", url.Values{"api_key": {"krt_wrong"}})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("login with a wrong key: %d, cookies %v; want 401 and none", resp.StatusCode, resp.Cookies())
	}
	if strings.Contains(body, "krt_wrong") {
		t.Errorf("the login page echoes the key it refused")
	}

	resp, _ = s.post(c, "/ui/login", url.Values{"api_key": {s.teamKey}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui" {
		t.Fatalf("login: %d to %q, want 303 to /ui", resp.StatusCode, resp.Header.Get("Location"))
	}
	cookie := sessionCookie(t, resp)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/ui" || cookie.Secure {
		t.Errorf("cookie flags: HttpOnly %v, SameSite %v, Path %q, Secure %v; want HttpOnly, Strict, /ui, not Secure over http",
			cookie.HttpOnly, cookie.SameSite, cookie.Path, cookie.Secure)
	}
	if cookie.MaxAge != 3600 || cookie.Expires.IsZero() {
		t.Errorf("cookie MaxAge %d, Expires %v; want an hour", cookie.MaxAge, cookie.Expires)
	}
	if strings.Contains(cookie.Value, s.teamKey) || strings.Contains(s.teamKey, cookie.Value) || len(cookie.Value) < 40 {
		t.Errorf("the session cookie is not a random id apart from the API key: %q", cookie.Value)
	}

	resp, body = s.get(c, "/ui")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-user="`+fleettest.Adopted+`"`) || strings.Contains(body, fleettest.Other) {
		t.Fatalf("GET /ui with the session: %d; want team's scope", resp.StatusCode)
	}
	if !strings.Contains(body, "<b>team</b>") {
		t.Errorf("the page does not say which API key is logged in")
	}

	// Logging out is a POST from the page's own origin; a cross-site one is refused.
	if resp, _ := s.post(c, "/ui/logout", nil, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site logout: %d, want 403", resp.StatusCode)
	}
	if resp, _ := s.get(c, "/ui"); resp.StatusCode != http.StatusOK {
		t.Errorf("the refused logout ended the session: %d", resp.StatusCode)
	}
	resp, _ = s.post(c, "/ui/logout", nil)
	if resp.StatusCode != http.StatusSeeOther || sessionCookie(t, resp).MaxAge >= 0 {
		t.Errorf("logout: %d, want 303 and the cookie removed", resp.StatusCode)
	}
	// The old cookie, replayed, opens nothing.
	old := s.client()
	old.Jar.SetCookies(mustURL(t, s.http.URL+"/ui"), []*http.Cookie{{Name: cookie.Name, Value: cookie.Value, Path: "/ui"}})
	if resp, _ := s.get(old, "/ui"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a logged-out session replayed: %d, want 401", resp.StatusCode)
	}
}

func TestLoginRefusesCrossOrigin(t *testing.T) {
	s := newSite(t, false)
	c := s.client()
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"},
		{"Sec-Fetch-Site", "", "Origin", "https://evil.example"},
	} {
		resp, _ := s.post(c, "/ui/login", url.Values{"api_key": {s.adminKey}}, h...)
		if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
			t.Errorf("cross-origin login (%v): %d, cookies %v; want 403 and none", h, resp.StatusCode, resp.Cookies())
		}
	}
}

func TestSessionEnds(t *testing.T) {
	s := newSite(t, false)
	login := func() *http.Client {
		c := s.client()
		if resp, _ := s.post(c, "/ui/login", url.Values{"api_key": {s.adminKey}}); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login: %d", resp.StatusCode)
		}
		return c
	}
	c := login()
	s.world.Clock.Advance(time.Hour)
	resp, _ := s.get(c, "/ui", "Accept", "text/html")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Errorf("an expired session: %d to %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Removing the API key ends the sessions it opened.
	c = login()
	if err := s.server.SetKeys(s.keys()[1:]); err != nil { // team only
		t.Fatal(err)
	}
	if resp, _ := s.get(c, "/ui"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session whose API key was removed: %d, want 401", resp.StatusCode)
	}
}

func TestSecureCookieUnderTLS(t *testing.T) {
	s := newSite(t, true)
	c := s.client()
	resp, _ := s.post(c, "/ui/login", url.Values{"api_key": {s.adminKey}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login over TLS: %d", resp.StatusCode)
	}
	if cookie := sessionCookie(t, resp); !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie over TLS: Secure %v HttpOnly %v SameSite %v; want all set", cookie.Secure, cookie.HttpOnly, cookie.SameSite)
	}
}

// TestNoSecretInAnyPage renders every page as admin and checks that no
// secret access key the world made, nor the API key, appears in any.
func TestNoSecretInAnyPage(t *testing.T) {
	s := newSite(t, false)
	c := s.client()
	if resp, _ := s.post(c, "/ui/login", url.Values{"api_key": {s.adminKey}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	pages := []string{"/ui", "/ui/login", "/ui/users/nobody", "/ui/static/refresh.js"}
	for _, u := range everyone {
		pages = append(pages, "/ui/users/"+u)
	}
	secrets := append(s.world.Secrets(), s.adminKey, s.teamKey)
	for _, p := range pages {
		resp, body := s.get(c, p)
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
		for _, secret := range secrets {
			if strings.Contains(body, secret) {
				t.Errorf("GET %s shows a secret", p)
			}
		}
		for _, h := range resp.Header {
			for _, v := range h {
				for _, secret := range secrets {
					if strings.Contains(v, secret) {
						t.Errorf("GET %s has a secret in a header", p)
					}
				}
			}
		}
	}
}

// TestSourceFailure: with no snapshot at all the page says so (503); with
// an old one, it shows it under a banner.
func TestSourceFailure(t *testing.T) {
	src := &failingSource{err: errors.New("iam: list users: AccessDenied")}
	h, err := ui.New(ui.Config{Source: src, Authenticate: allowAll})
	if err != nil {
		t.Fatal(err)
	}
	rec := getDirect(h, "/ui")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "AccessDenied") {
		t.Errorf("no snapshot: %d %s", rec.Code, rec.Body.String())
	}
	src.last = fleet.Snapshot{At: fleettest.T0, Users: []fleet.User{{Name: "alice"}}}
	rec = getDirect(h, "/ui")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `role="alert"`) || !strings.Contains(rec.Body.String(), `data-user="alice"`) {
		t.Errorf("an old snapshot: %d, want it shown under a banner", rec.Code)
	}
}

// TestTargetsSeam: a user with delivery targets gets a Delivery column;
// none has today, so the column is absent.
func TestTargetsSeam(t *testing.T) {
	snap := fleet.Snapshot{At: fleettest.T0, Users: []fleet.User{{Name: "alice", Targets: []fleet.Target{{Name: "github:org/repo", KeyID: "AKIAX", State: "delivered"}}}}}
	h, err := ui.New(ui.Config{Source: &failingSource{last: snap}, Authenticate: allowAll})
	if err != nil {
		t.Fatal(err)
	}
	rec := getDirect(h, "/ui")
	if !strings.Contains(rec.Body.String(), "<th>Delivery</th>") || !strings.Contains(rec.Body.String(), "github:org/repo: delivered") {
		t.Errorf("targets not shown")
	}
}

// getDirect serves GET path with a bearer key on h alone, without a server.
func getDirect(h http.Handler, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer anything")
	h.ServeHTTP(rec, req)
	return rec
}

type failingSource struct {
	last fleet.Snapshot
	err  error
}

func (f *failingSource) Snapshot(context.Context) (fleet.Snapshot, error) { return f.last, f.err }

func allowAll(http.ResponseWriter, *http.Request, string) (ui.Principal, error) {
	return ui.Principal{Name: "test", Allows: func(string) bool { return true }}, nil
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == "keyrot_ui_session" {
			return c
		}
	}
	t.Fatalf("no session cookie in %v", resp.Header["Set-Cookie"])
	return nil
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
