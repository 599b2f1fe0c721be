// Package http is keyrot's REST API: it hands each managed IAM user's
// current access key to CI/CD pipelines and programs, and the client they
// fetch it with.
//
// The server is seed-compatible (GET /credentials/{user} and GET
// /credentials behind X-API-Key, port 8000) and adds named, scoped API keys
// stored as hashes, with an expiry and their rotation (RotateKey),
// Authorization: Bearer, the credential_process and env formats, an audit
// record for every credential read, an access log, Prometheus metrics that
// name users only to an authenticated scrape, per-key rate limits, a limit
// on failed authentication per client address, TLS and graceful shutdown. Reads
// are served from a Cache that a rotation in the same process updates the
// moment a new key is promoted.
//
// Import it as keyrothttp.
package http

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
)

// Response formats for a single user's credentials.
const (
	// FormatJSON is the default: keyrot's JSON document.
	FormatJSON = "json"
	// FormatCredentialProcess is exactly the JSON the AWS SDKs and CLI read
	// from a credential_process command.
	FormatCredentialProcess = "credential_process"
	// FormatEnv is shell export lines, AWS_CREDENTIAL_EXPIRATION included.
	FormatEnv = "env"
)

// CredentialsResponse is the JSON body of GET /credentials/{user}. Its field
// names follow the seed and AWS (AccessKeyId), and times are RFC 3339 UTC.
type CredentialsResponse struct {
	UserName        string
	AccessKeyId     string //nolint:revive // AWS's spelling
	SecretAccessKey string
	CreateDate      time.Time
	// NextRotation is when the next key is due: fetch again after it.
	NextRotation time.Time
	// Expiration is the latest time to fetch again: after it the key may
	// be deactivated.
	Expiration time.Time
}

// CredentialsListResponse is the JSON body of GET /credentials.
type CredentialsListResponse struct {
	Credentials []CredentialsResponse
}

// CredentialProcessResponse is the AWS credential_process output, version 1.
type CredentialProcessResponse struct {
	Version         int
	AccessKeyId     string //nolint:revive // AWS's spelling
	SecretAccessKey string
	Expiration      time.Time
}

// ErrorResponse is the JSON body of every error.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong, without revealing which users exist.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func credentialsJSON(c keyrot.Credentials) CredentialsResponse {
	return CredentialsResponse{
		UserName:        c.UserName,
		AccessKeyId:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		CreateDate:      c.CreateDate.UTC(),
		NextRotation:    c.NextRotation.UTC(),
		Expiration:      c.Expiration.UTC(),
	}
}

func credentialProcessJSON(c keyrot.Credentials) CredentialProcessResponse {
	return CredentialProcessResponse{
		Version:         1,
		AccessKeyId:     c.AccessKeyID,
		SecretAccessKey: c.SecretAccessKey,
		Expiration:      c.Expiration.UTC(),
	}
}

// envLines renders credentials as shell export lines.
func envLines(c keyrot.Credentials) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "export AWS_ACCESS_KEY_ID=%s\n", shellQuote(c.AccessKeyID))
	fmt.Fprintf(&b, "export AWS_SECRET_ACCESS_KEY=%s\n", shellQuote(c.SecretAccessKey))
	fmt.Fprintf(&b, "export AWS_CREDENTIAL_EXPIRATION=%s\n", c.Expiration.UTC().Format(time.RFC3339))
	b.WriteString("unset AWS_SESSION_TOKEN\n")
	return []byte(b.String())
}

// shellQuote leaves a value made of safe characters as it is (access keys
// are) and single-quotes anything else.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/+=._:-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Errors the handlers return; statusOf maps them, and the domain's, to
// HTTP statuses in one place.
var (
	errUnauthorized     = errors.New("missing or invalid API key: send it as X-API-Key or Authorization: Bearer")
	errForbidden        = errors.New("this API key may not read this user")
	errListForbidden    = errors.New("this API key may not list credentials")
	errNotManaged       = errors.New("no current credentials for this user")
	errNotFound         = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed")
	errRateLimited      = errors.New("rate limit exceeded for this API key")
	errKeyExpired       = errors.New("API key expired")
	errAuthBlocked      = errors.New("too many failed authentication attempts from this address: retry later")
	errNotReady         = errors.New("credentials are still loading; retry shortly")
	errTooLarge         = errors.New("request body too large")
	errUnread           = errors.New("the user's current key could not be read from Secrets Manager yet; retry shortly")
)

// badRequest is a client error with its own message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// statusOf maps an error to the HTTP status, error code and the message a
// client may see. Unknown errors are 500 with a generic message: their
// detail is for the log.
func statusOf(err error) (status int, code, msg string) {
	var br *badRequest
	var amb *ambiguousUser
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest, "bad_request", br.msg
	case errors.As(err, &amb):
		return http.StatusConflict, "ambiguous_user", amb.Error()
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, "unauthorized", errUnauthorized.Error()
	case errors.Is(err, errKeyExpired):
		return http.StatusUnauthorized, "key_expired", errKeyExpired.Error()
	case errors.Is(err, errAuthBlocked):
		return http.StatusTooManyRequests, "too_many_failures", errAuthBlocked.Error()
	case errors.Is(err, errForbidden), errors.Is(err, errListForbidden):
		return http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, errNotManaged), errors.Is(err, keyrot.ErrUserNotFound), errors.Is(err, keyrot.ErrSecretNotFound):
		return http.StatusNotFound, "not_found", errNotManaged.Error()
	case errors.Is(err, errNotFound):
		return http.StatusNotFound, "not_found", errNotFound.Error()
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed, "method_not_allowed", errMethodNotAllowed.Error()
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests, "rate_limited", errRateLimited.Error()
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", errTooLarge.Error()
	case errors.Is(err, errNotReady):
		return http.StatusServiceUnavailable, "not_ready", errNotReady.Error()
	case errors.Is(err, errUnread):
		return http.StatusServiceUnavailable, "unavailable", errUnread.Error()
	default:
		return http.StatusInternalServerError, "internal", "internal error"
	}
}

// writeJSON writes v as the response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	writeBody(w, status, "application/json", append(body, '\n'))
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	ct, ok := contentTypes[contentType]
	if !ok {
		ct = []string{contentType}
	}
	h["Content-Type"] = ct
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Header values shared by every response rather than allocated for each
// (net/http only reads them; Header.Add would copy, not append in place).
var (
	nosniff      = []string{"nosniff"}
	contentTypes = map[string][]string{
		"application/json":          {"application/json"},
		"application/yaml":          {"application/yaml"},
		"text/plain; charset=utf-8": {"text/plain; charset=utf-8"},
	}
)

// Render formats credentials as the API would serve them in format, so the
// client's --direct mode prints exactly what the server would have sent.
func Render(c keyrot.Credentials, format string) ([]byte, error) {
	var v any
	switch format {
	case "", FormatJSON:
		v = credentialsJSON(c)
	case FormatCredentialProcess:
		v = credentialProcessJSON(c)
	case FormatEnv:
		return envLines(c), nil
	default:
		return nil, &badRequest{fmt.Sprintf("unknown format %q: want json, env or credential_process", format)}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("http: encode credentials: %w", err)
	}
	return append(b, '\n'), nil
}
