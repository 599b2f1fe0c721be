package sandbox

import (
	"embed"
	"html/template"
	"net/http"
	"slices"
	"strings"
)

//go:embed outbox.html.tmpl
var outboxTemplates embed.FS

// outboxPages are the outbox's HTML views: the list and one message.
var outboxPages = template.Must(template.ParseFS(outboxTemplates, "outbox.html.tmpl"))

// The outbox's own pages load nothing from elsewhere and run no script;
// they may frame only the sandbox's own message views.
const outboxCSP = "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// mailCSP isolates a message's own HTML: a sandbox with an opaque origin,
// no script, nothing loaded, no forms; framed only by the outbox.
const mailCSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'"

// wantsHTML reports whether a request asks for a page (a browser) rather
// than JSON (curl, tests, scripts).
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// outboxRoutes serves the outbox: GET /_sandbox/ses/outbox lists the
// messages (HTML to a browser, JSON otherwise; ?account=ID: those sent from
// that account), .../{id} shows one (its
// headers and text, with its HTML framed), .../{id}/html the message's own
// HTML under a restrictive CSP, and DELETE empties the outbox.
func (s *Server) outboxRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sandbox/ses/outbox", func(w http.ResponseWriter, r *http.Request) {
		out := s.Outbox()
		if account := r.URL.Query().Get("account"); account != "" {
			out = slices.DeleteFunc(out, func(e Email) bool { return e.Account != account })
		}
		if out == nil {
			out = []Email{}
		}
		if !wantsHTML(r) {
			adminJSON(w, http.StatusOK, out)
			return
		}
		slices.Reverse(out) // newest first
		renderOutbox(w, http.StatusOK, "list", out)
	})
	mux.HandleFunc("DELETE /_sandbox/ses/outbox", func(w http.ResponseWriter, r *http.Request) {
		s.ClearOutbox()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sandbox/ses/outbox/{id}", func(w http.ResponseWriter, r *http.Request) {
		e, ok := s.outboxMessage(r.PathValue("id"))
		switch {
		case !ok && wantsHTML(r):
			renderOutbox(w, http.StatusNotFound, "missing", nil)
		case !ok:
			adminJSON(w, http.StatusNotFound, map[string]string{"error": "no such message in the outbox"})
		case wantsHTML(r):
			renderOutbox(w, http.StatusOK, "message", e)
		default:
			adminJSON(w, http.StatusOK, e)
		}
	})
	mux.HandleFunc("GET /_sandbox/ses/outbox/{id}/html", func(w http.ResponseWriter, r *http.Request) {
		e, ok := s.outboxMessage(r.PathValue("id"))
		if !ok || e.HTML == "" {
			http.Error(w, "no such message, or it has no HTML part", http.StatusNotFound)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", mailCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(e.HTML))
	})
}

// outboxMessage finds a message by its id.
func (s *Server) outboxMessage(id string) (Email, bool) {
	for _, e := range s.Outbox() {
		if e.MessageID == id {
			return e, true
		}
	}
	return Email{}, false
}

func renderOutbox(w http.ResponseWriter, status int, page string, data any) {
	var b strings.Builder
	if err := outboxPages.ExecuteTemplate(&b, page, data); err != nil {
		http.Error(w, "render outbox: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", outboxCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}
