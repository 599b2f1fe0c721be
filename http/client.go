package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/keyrot/keyrot"
)

// Client fetches credentials from a keyrot API.
type Client struct {
	// BaseURL is the API's root, e.g. "https://keyrot.internal:8000".
	BaseURL string
	// APIKey is sent as Authorization: Bearer; it never appears in an error.
	APIKey string
	// HTTPClient makes the requests (http.DefaultClient when nil). Its
	// redirects are followed only within the BaseURL's origin: the API key
	// never goes to another scheme, host or port.
	HTTPClient *http.Client
}

// ErrCrossOriginRedirect is returned when the API redirects to another
// origin (scheme, host and port): the client refuses to follow, so the API
// key is not sent there.
var ErrCrossOriginRedirect = errors.New("redirected to another origin; the API key is not sent there: point the client at the final URL")

// maxRedirects is how many same-origin redirects the client follows.
const maxRedirects = 10

// httpClient is the HTTPClient with a redirect policy that stays within
// the origin of the first request (Go's own forwards Authorization to
// another port of the same host).
func (c *Client) httpClient() *http.Client {
	hc := http.DefaultClient
	if c.HTTPClient != nil {
		hc = c.HTTPClient
	}
	cp := *hc
	next := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if from, to := origin(via[0].URL), origin(req.URL); to != from {
			return fmt.Errorf("%w (%s to %s)", ErrCrossOriginRedirect, from, to)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &cp
}

// origin is scheme://host:port, with the scheme's default port made explicit.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// APIError is an error response from the API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// maxResponseBytes bounds what the client reads from a response.
const maxResponseBytes = 1 << 20

// Credentials returns the user's current credentials in format (json,
// credential_process or env; "" is json), as the server wrote them. user
// may name its account, "<account>/<user>", for a keyrot that works
// across accounts.
func (c *Client) Credentials(ctx context.Context, user, format string) ([]byte, error) {
	if user == "" {
		return nil, errors.New("api client: user name is empty")
	}
	path := url.PathEscape(user)
	if account, name, ok := strings.Cut(user, "/"); ok {
		path = url.PathEscape(account) + "/" + url.PathEscape(name)
	}
	u, err := url.Parse(strings.TrimSuffix(c.BaseURL, "/") + "/credentials/" + path)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api client: invalid base URL %q: want http(s)://host[:port]", c.BaseURL)
	}
	if format != "" && format != FormatJSON {
		u.RawQuery = url.Values{"format": {format}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("api client: get credentials for %q: %w", user, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		// *url.Error names the URL, which holds no secret.
		return nil, fmt.Errorf("api client: get credentials for %q: %w", user, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("api client: get credentials for %q: read response: %w", user, err)
	}
	if resp.StatusCode != http.StatusOK {
		apiErr := &APIError{Status: resp.StatusCode}
		var er ErrorResponse
		if json.Unmarshal(body, &er) == nil {
			apiErr.Code, apiErr.Message = er.Error.Code, er.Error.Message
		}
		return nil, fmt.Errorf("api client: get credentials for %q from %s: %w", user, u.Host, apiErr)
	}
	return body, nil
}

// Get returns the user's current credentials.
func (c *Client) Get(ctx context.Context, user string) (keyrot.Credentials, error) {
	body, err := c.Credentials(ctx, user, FormatJSON)
	if err != nil {
		return keyrot.Credentials{}, err
	}
	var r CredentialsResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return keyrot.Credentials{}, fmt.Errorf("api client: get credentials for %q: decode response: %w", user, err)
	}
	if r.AccessKeyId == "" || r.SecretAccessKey == "" {
		return keyrot.Credentials{}, fmt.Errorf("api client: get credentials for %q: response has no access key", user)
	}
	return keyrot.Credentials{
		UserName:        r.UserName,
		AccessKeyID:     r.AccessKeyId,
		SecretAccessKey: r.SecretAccessKey,
		CreateDate:      r.CreateDate,
		NextRotation:    r.NextRotation,
		Expiration:      r.Expiration,
	}, nil
}
