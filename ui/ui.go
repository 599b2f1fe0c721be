// Package ui is keyrot's read-only web view of the fleet, served at /ui by
// the API server: every managed user with its keys, what keyrot will do next
// and when, warnings and exempt users, and a page per user with the key
// timeline and recent events. Pages are rendered on the server from a
// fleet.Snapshot (the state `keyrot status` shows), with embedded CSS and a
// few lines of JavaScript for auto-refresh; there is no build step.
//
// Access takes an API key, as the API does: in Authorization: Bearer (for
// scripts), or entered once at /ui/login, which opens a session: a random id
// in an HttpOnly, SameSite=Strict cookie (Secure under TLS) that expires,
// mapped in memory to the key; the key is checked again on every page, so
// a removed or expired key ends its sessions. A key sees only the users its
// scope covers; no page ever holds a secret access key. The only writes are
// login and logout, which refuse cross-origin requests.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/fleet"
)

//go:embed templates/*.html.tmpl
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is where the UI is served.
const Prefix = "/ui"

// Source gives the fleet's state (a *fleet.Cached over a fleet.Observer).
// On failure it may return the last good snapshot with the error.
type Source interface {
	Snapshot(ctx context.Context) (fleet.Snapshot, error)
}

// EventSource gives the events this process emitted for a user, newest
// first (*fleet.EventLog).
type EventSource interface {
	Recent(user string) []keyrot.Event
	Since() time.Time
}

// Principal is who an API key speaks for: its name and its scope.
type Principal struct {
	// Name is the API key's name (never the key).
	Name string
	// Allows reports whether the key may see user.
	Allows func(user string) bool
}

// Authenticator checks an API key as the API does (known, not expired,
// within its rate limit). It may write headers to w (Retry-After). An
// error may carry its HTTP status with a method HTTPStatus() int.
type Authenticator func(w http.ResponseWriter, r *http.Request, apiKey string) (Principal, error)

// Config is what a Handler is built from. Source and Authenticate are
// required.
type Config struct {
	Source       Source
	Authenticate Authenticator
	// Events, if set, are shown on user pages as what this process saw.
	Events EventSource
	// Rules are the policy keys are checked against (default: fleet.DefaultRules).
	Rules fleet.Rules
	// SessionTTL is how long a login lasts (default 8h).
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept (default 1000); the oldest
	// goes first.
	MaxSessions int
	// Refresh is how often pages reload themselves (default 30s).
	Refresh time.Duration
	Clock   keyrot.Clock
	Logger  *slog.Logger
}

// Handler serves the UI under Prefix.
type Handler struct {
	cfg      Config
	sessions *sessions
	pages    map[string]*template.Template
	handler  http.Handler
	log      *slog.Logger
}

// New checks cfg, fills in defaults and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Source == nil || cfg.Authenticate == nil {
		return nil, errors.New("ui: a source and an authenticator are required")
	}
	if cfg.Rules == (fleet.Rules{}) {
		cfg.Rules = fleet.DefaultRules()
	}
	if err := cfg.Rules.Validate(); err != nil {
		return nil, fmt.Errorf("ui: %w", err)
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = keyrot.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, sessions: newSessions(cfg.MaxSessions), log: cfg.Logger.With("system", "ui")}
	var err error
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("ui: static files: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET "+Prefix, h.handleFleet)
	mux.HandleFunc("GET "+Prefix+"/users/{user}", h.handleUser)
	mux.HandleFunc("GET "+Prefix+"/login", h.handleLoginForm)
	mux.HandleFunc("POST "+Prefix+"/login", h.handleLogin)
	mux.HandleFunc("POST "+Prefix+"/logout", h.handleLogout)
	mux.Handle("GET "+Prefix+"/static/", http.StripPrefix(Prefix+"/static/", http.FileServerFS(static)))
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusNotFound, "message", page{Title: "Not found", Message: "There is no such page."})
	})
	// Login and logout are the only writes: refuse them cross-origin
	// (Sec-Fetch-Site, else Origin against Host), so no other site can
	// log a browser in or out.
	h.handler = securityHeaders(http.NewCrossOriginProtection().Handler(mux))
	return h, nil
}

// ServeHTTP serves the UI.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handler.ServeHTTP(w, r) }

// Patterns are the mux patterns the UI answers, for the server it is
// mounted on.
func Patterns() []string { return []string{Prefix, Prefix + "/"} }

// contentSecurityPolicy allows the page its own CSS and script and nothing
// else: no inline script, no framing, forms only to itself.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// sessionCookie names the session cookie.
const sessionCookie = "keyrot_ui_session"

// presentedKey is an API key sent in the request's headers, as the API
// takes it: X-API-Key or Authorization: Bearer.
func presentedKey(r *http.Request) string {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k
	}
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

// principal authenticates the request: an API key in its headers, else its
// session. Without either it sends a browser to the login page and anyone
// else a 401; with a bad key, a 401 (or the authenticator's status).
func (h *Handler) principal(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	if key := presentedKey(r); key != "" {
		p, err := h.cfg.Authenticate(w, r, key)
		if err != nil {
			h.refuse(w, r, err)
			return Principal{}, false
		}
		return p, true
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if key, ok := h.sessions.get(c.Value, h.cfg.Clock.Now()); ok {
			p, err := h.cfg.Authenticate(w, r, key)
			if err == nil {
				return p, true
			}
			var st interface{ HTTPStatus() int }
			if errors.As(err, &st) && st.HTTPStatus() == http.StatusTooManyRequests {
				h.refuse(w, r, err) // keep the session: the key is still good
				return Principal{}, false
			}
			h.sessions.drop(c.Value) // the key was removed or expired
		}
		http.SetCookie(w, h.expiredCookie(r))
	}
	if wantsHTML(r) {
		http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
		return Principal{}, false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="keyrot"`)
	h.render(w, r, http.StatusUnauthorized, "message", page{Title: "API key required",
		Message: "Send an API key as Authorization: Bearer, or log in at " + Prefix + "/login."})
	return Principal{}, false
}

// refuse answers a rejected API key.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusUnauthorized
	var st interface{ HTTPStatus() int }
	if errors.As(err, &st) {
		status = st.HTTPStatus()
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyrot"`)
	}
	h.render(w, r, status, "message", page{Title: http.StatusText(status), Message: "The API key was not accepted: " + refusal(err)})
}

// refusal is what a person is told about a rejected key: the
// authenticator's message, never the key (it does not have it).
func refusal(err error) string {
	return keyrot.RedactSecrets(err.Error())
}

func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func (h *Handler) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, "login", page{Title: "Log in"})
}

func (h *Handler) handleLogin(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.PostFormValue("api_key"))
	if key == "" {
		h.render(w, r, http.StatusBadRequest, "login", page{Title: "Log in", Message: "Enter an API key."})
		return
	}
	p, err := h.cfg.Authenticate(w, r, key)
	if err != nil {
		status := http.StatusUnauthorized
		var st interface{ HTTPStatus() int }
		if errors.As(err, &st) {
			status = st.HTTPStatus()
		}
		h.log.Info("login refused", "remote", r.RemoteAddr, "status", status)
		h.render(w, r, status, "login", page{Title: "Log in", Message: "That API key was not accepted: " + refusal(err)})
		return
	}
	now := h.cfg.Clock.Now()
	id, err := h.sessions.open(key, now.Add(h.cfg.SessionTTL))
	if err != nil {
		h.log.Error("open session", "error", err)
		h.render(w, r, http.StatusInternalServerError, "message", page{Title: "Error", Message: "Could not open a session; try again."})
		return
	}
	h.log.Info("login", "api_key", p.Name, "remote", r.RemoteAddr)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: Prefix,
		Expires: now.Add(h.cfg.SessionTTL), MaxAge: int(h.cfg.SessionTTL / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (h *Handler) handleLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.sessions.drop(c.Value)
	}
	http.SetCookie(w, h.expiredCookie(r))
	http.Redirect(w, r, Prefix+"/login", http.StatusSeeOther)
}

func (h *Handler) expiredCookie(r *http.Request) *http.Cookie {
	return &http.Cookie{Name: sessionCookie, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// snapshot returns the fleet, or answers the request itself when there is
// none to show.
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request) (fleet.Snapshot, string, bool) {
	s, err := h.cfg.Source.Snapshot(r.Context())
	if err == nil {
		return s, "", true
	}
	msg := "Could not observe the fleet: " + keyrot.RedactSecrets(err.Error())
	h.log.Warn("observe the fleet", "error", keyrot.RedactSecrets(err.Error()))
	if s.At.IsZero() {
		h.render(w, r, http.StatusServiceUnavailable, "message", page{Title: "Fleet unavailable", Message: msg})
		return s, "", false
	}
	return s, msg + " Showing the last good view.", true
}

func (h *Handler) handleFleet(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principal(w, r)
	if !ok {
		return
	}
	s, stale, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	h.render(w, r, http.StatusOK, "fleet", h.fleetPage(p, s, stale))
}

func (h *Handler) handleUser(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principal(w, r)
	if !ok {
		return
	}
	name := r.PathValue("user")
	// Scope first: a user out of scope and one that does not exist get
	// the same answer, so a key cannot probe which users exist.
	if !p.Allows(name) {
		h.notFoundUser(w, r, p)
		return
	}
	s, stale, ok := h.snapshot(w, r)
	if !ok {
		return
	}
	for _, u := range s.Users {
		if u.Name == name {
			h.render(w, r, http.StatusOK, "user", h.userPage(p, s, u, stale))
			return
		}
	}
	h.notFoundUser(w, r, p)
}

func (h *Handler) notFoundUser(w http.ResponseWriter, r *http.Request, p Principal) {
	h.render(w, r, http.StatusNotFound, "message", page{Title: "No such user", Who: p.Name,
		Message: "keyrot manages no such user, or your API key may not see it."})
}

func (h *Handler) render(w http.ResponseWriter, _ *http.Request, status int, name string, data any) {
	t := h.pages[name]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", data); err != nil {
		h.log.Error("render page", "page", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// parsePages parses each page with the layout it is drawn in.
func parsePages() (map[string]*template.Template, error) {
	layout, err := template.ParseFS(templateFS, "templates/layout.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("ui: parse layout: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"fleet", "user", "login", "message"} {
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html.tmpl")
		if err != nil {
			return nil, fmt.Errorf("ui: parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}
