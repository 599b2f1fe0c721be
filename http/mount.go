package http

import (
	"net/http"
)

// mount is a handler served beside the API (the UI).
type mount struct {
	pattern string
	handler http.Handler
}

// WithHandler serves h at each pattern of the API's mux, behind the API's
// middleware (access log, metrics, body limit, Cache-Control: no-store).
// The UI is mounted so, at /ui.
func WithHandler(h http.Handler, patterns ...string) ServerOption {
	return func(s *Server) {
		for _, p := range patterns {
			s.mounts = append(s.mounts, mount{pattern: p, handler: h})
		}
	}
}

// KeyError is why CheckKey refused a key, with the HTTP status to answer.
type KeyError struct {
	status int
	msg    string
	err    error
}

func (e *KeyError) Error() string { return e.msg }

// HTTPStatus is the status to answer: 401, or 429 for a rate limit.
func (e *KeyError) HTTPStatus() int { return e.status }

// Unwrap returns the API's own error.
func (e *KeyError) Unwrap() error { return e.err }

// CheckKey checks apiKey exactly as the API checks the key a request
// presents in its headers (known, within its rate limit, and every other
// rule the API applies), for a handler mounted beside the API that takes
// the key elsewhere: the UI's login form and its sessions. It returns the
// key's entry (its name and scope; never the key) or a *KeyError.
func (s *Server) CheckKey(w http.ResponseWriter, r *http.Request, apiKey string) (APIKey, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Del("X-Api-Key")
	r2.Header.Set("Authorization", "Bearer "+apiKey)
	key, err := s.authenticate(w, r2)
	if err != nil {
		status, _, msg := statusOf(err)
		return APIKey{}, &KeyError{status: status, msg: msg, err: err}
	}
	return *key, nil
}
