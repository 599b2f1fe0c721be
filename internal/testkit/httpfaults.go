package testkit

import (
	"io"
	"net/http"
	"sync"
)

// HTTPFaults sits in front of a fake API: it records every request, and on
// demand answers with an error status or hangs until the client gives up.
// The zero value passes every request through.
type HTTPFaults struct {
	mu    sync.Mutex
	fault func(r *http.Request) int
	hang  bool
	calls []string
}

// Fail makes every request for which f returns a status be answered with it
// by answer (0: served normally); nil stops failing.
func (h *HTTPFaults) Fail(f func(r *http.Request) int) {
	h.mu.Lock()
	h.fault = f
	h.mu.Unlock()
}

// Hang makes every request wait until its client gives up (a timeout).
func (h *HTTPFaults) Hang(on bool) {
	h.mu.Lock()
	h.hang = on
	h.mu.Unlock()
}

// Calls lists the requests seen, as "METHOD /escaped/path?query".
func (h *HTTPFaults) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// Wrap puts the faults in front of next; answer writes an injected status
// the way the fake API writes its errors.
func (h *HTTPFaults) Wrap(next http.Handler, answer func(w http.ResponseWriter, code int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			call += "?" + r.URL.RawQuery
		}
		h.mu.Lock()
		h.calls = append(h.calls, call)
		fault, hang := h.fault, h.hang
		h.mu.Unlock()
		if hang {
			// The server notices a client that gave up only once the body is read.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		if fault != nil {
			if code := fault(r); code != 0 {
				answer(w, code)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
