package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// The adapter between Lambda's HTTP events and net/http. A function URL
// and an API Gateway HTTP API (payload format 2.0) send the same request
// event and read the same response, so one adapter serves both.

// newRequest turns a function URL event into the request keyrot's handler
// serves, as net/http's server would have built it.
func newRequest(ctx context.Context, ev events.LambdaFunctionURLRequest) (*http.Request, error) {
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		return nil, fmt.Errorf("api-lambda: event has no requestContext.http.method: not a function URL or HTTP API (2.0) event")
	}
	target := ev.RawPath
	if target == "" {
		target = "/"
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		// A path net/http would have refused (a bad escape): handed over
		// as it came, it matches no route, or fails the user name check,
		// and the handler answers with its JSON error.
		u = &url.URL{Path: target}
	}
	u.RawQuery = ev.RawQueryString

	var body []byte
	if ev.Body != "" {
		if ev.IsBase64Encoded {
			if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
				return nil, fmt.Errorf("api-lambda: request body: %w", err)
			}
		} else {
			body = []byte(ev.Body)
		}
	}
	r, err := http.NewRequestWithContext(ctx, method, "/", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("api-lambda: request: %w", err)
	}
	r.URL = u
	r.RequestURI = u.RequestURI()
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	// The event joins repeated headers with commas and keeps cookies apart.
	for name, value := range ev.Headers {
		r.Header.Set(name, value)
	}
	if len(ev.Cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	r.Host = r.Header.Get("Host")
	if r.Host == "" {
		r.Host = ev.RequestContext.DomainName
	}
	// The caller's address as Lambda saw it: what the audit record names.
	r.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	return r, nil
}

// responseWriter records what the handler writes.
type responseWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newResponseWriter() *responseWriter { return &responseWriter{header: http.Header{}} }

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

// response is the function URL response for what was written. Repeated
// headers are joined with commas (Set-Cookie goes to Cookies); a body that
// is not UTF-8 text travels base64-encoded; HEAD gets no body.
func (w *responseWriter) response(method string) events.LambdaFunctionURLResponse {
	res := events.LambdaFunctionURLResponse{StatusCode: w.status, Headers: make(map[string]string, len(w.header))}
	if res.StatusCode == 0 {
		res.StatusCode = http.StatusOK
	}
	for name, values := range w.header {
		if name == "Set-Cookie" {
			res.Cookies = append(res.Cookies, values...)
			continue
		}
		res.Headers[name] = strings.Join(values, ", ")
	}
	if method == http.MethodHead {
		return res
	}
	if b := w.body.Bytes(); utf8.Valid(b) {
		res.Body = string(b)
	} else {
		res.Body, res.IsBase64Encoded = base64.StdEncoding.EncodeToString(b), true
	}
	return res
}
