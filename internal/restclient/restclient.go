// Package restclient is the small JSON-over-HTTPS client the delivery
// targets (github, gitlab) share: a timeout per request, retries with
// exponential backoff on 429 and 5xx (honouring Retry-After) and on network
// errors, and errors that name the request and the answer but never carry a
// request body (which holds secrets) or the token.
package restclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
)

// Defaults for Client.
const (
	DefaultTimeout    = 30 * time.Second
	DefaultAttempts   = 4
	DefaultBackoff    = time.Second
	DefaultMaxBackoff = 30 * time.Second
)

// Client sends JSON requests to one API.
type Client struct {
	// HTTP sends the requests (nil: a client of its own).
	HTTP *http.Client
	// Header is added to every request (authorization, API version).
	Header http.Header
	// Timeout bounds each attempt (default DefaultTimeout).
	Timeout time.Duration
	// Attempts bounds the tries of a request that fails with 429, 5xx or a
	// network error (default DefaultAttempts).
	Attempts int
	// Backoff is the first wait between attempts, doubled up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Clock times the waits (nil: the wall clock).
	Clock keyrot.Clock
}

// With returns a copy of c (nil: the defaults) that sends header with every
// request, on top of c's own.
func (c *Client) With(header http.Header) *Client {
	out := Client{}
	if c != nil {
		out = *c
	}
	out.Header = out.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	for k, v := range header {
		out.Header[k] = v
	}
	return &out
}

// BaseURL checks an API's base URL (http or https, with a host) and
// returns it without a trailing slash; example is shown in the error.
func BaseURL(raw, example string) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("api_url %q: want %s", raw, example)
	}
	return u.String(), nil
}

// StatusError is an answer outside 2xx, after any retries.
type StatusError struct {
	Method, Path string
	Status       int
	// Message is the API's own message ("message" or "error" in a JSON
	// body), shortened and redacted.
	Message string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// IsStatus reports whether err is a StatusError with one of the codes.
func IsStatus(err error, codes ...int) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return false
	}
	for _, c := range codes {
		if se.Status == c {
			return true
		}
	}
	return false
}

// Do sends method to rawURL with in as its JSON body (nil: none) and decodes
// a JSON answer into out (nil: ignored). It retries what is worth retrying;
// every error names the method and the URL's path, never the body.
func (c *Client) Do(ctx context.Context, method, rawURL string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, pathOf(rawURL), err)
		}
	}
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	backoff := keyrot.Backoff{Initial: c.Backoff, Max: c.MaxBackoff}
	if backoff.Initial <= 0 {
		backoff.Initial = DefaultBackoff
	}
	if backoff.Max <= 0 {
		backoff.Max = DefaultMaxBackoff
	}
	clock := c.Clock
	if clock == nil {
		clock = keyrot.SystemClock{}
	}
	for attempt := 1; ; attempt++ {
		wait, err := c.once(ctx, method, rawURL, body, out)
		if err == nil || wait < 0 || attempt >= attempts || ctx.Err() != nil {
			return err
		}
		if wait == 0 { // no Retry-After: the attempt's backoff
			wait = backoff.Delay(attempt)
		}
		select {
		case <-clock.After(min(wait, backoff.Max)):
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up waiting to retry: %w)", err, ctx.Err())
		}
	}
}

// once makes one attempt. wait says whether to retry: -1 never, 0 after the
// backoff, more after that long (Retry-After).
func (c *Client) once(ctx context.Context, method, rawURL string, body []byte, out any) (time.Duration, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, rawURL, bytes.NewReader(body))
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", method, pathOf(rawURL), err)
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	httpClient := c.HTTP
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		// The url.Error names the whole URL; keep the path alone.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("%s %s: %w", method, pathOf(rawURL), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("%s %s: read answer: %w", method, pathOf(rawURL), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{Method: method, Path: pathOf(rawURL), Status: resp.StatusCode, Message: message(raw)}
		switch {
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			return retryAfter(resp.Header.Get("Retry-After")), se
		case resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0":
			// GitHub's primary rate limit answers 403.
			return retryAfter(resp.Header.Get("Retry-After")), se
		}
		return -1, se
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return -1, fmt.Errorf("%s %s: decode answer: %w", method, pathOf(rawURL), err)
		}
	}
	return -1, nil
}

// retryAfter reads a Retry-After in seconds (0: none or unreadable).
func retryAfter(h string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 0
}

// message is an API's error message from its JSON answer, short and
// redacted.
func message(raw []byte) string {
	var body struct {
		Message any `json:"message"`
		Error   any `json:"error"`
	}
	if json.Unmarshal(raw, &body) != nil {
		return ""
	}
	m := body.Message
	if m == nil {
		m = body.Error
	}
	var s string
	switch v := m.(type) {
	case nil:
		return ""
	case string:
		s = v
	default: // GitLab's validation errors: {"message": {"key": ["..."]}}
		b, _ := json.Marshal(v)
		s = string(b)
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return keyrot.RedactSecrets(s)
}

// pathOf is the URL's path: errors name it, never a query or credentials.
func pathOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(bad URL)"
	}
	return u.Host + u.EscapedPath()
}
