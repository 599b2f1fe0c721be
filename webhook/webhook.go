// Package webhook delivers keyrot's events as signed HTTP POSTs, and
// verifies them on the receiving side.
//
// A delivery is a POST of the event's JSON (notify.Payload) with these
// headers:
//
//	Content-Type:        application/json
//	X-Keyrot-Event:      the event kind, e.g. key_created
//	X-Keyrot-Delivery:   the event's id (the same on every retry): drop duplicates by it
//	X-Keyrot-Timestamp:  when this attempt was signed, in Unix seconds
//	X-Keyrot-Signature:  sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>
//
// The signed message is the timestamp header's value, a full stop, and the
// body's exact bytes. A receiver recomputes the HMAC with the shared secret,
// compares in constant time, and rejects a timestamp too far from its clock
// (Verify does all three), so a captured request cannot be replayed later.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/notify"
)

// The headers of a delivery.
const (
	HeaderEvent     = "X-Keyrot-Event"
	HeaderDelivery  = "X-Keyrot-Delivery"
	HeaderTimestamp = "X-Keyrot-Timestamp"
	HeaderSignature = "X-Keyrot-Signature"
)

// signaturePrefix names the signature's algorithm.
const signaturePrefix = "sha256="

// DefaultTolerance is how far Verify lets a timestamp be from now.
const DefaultTolerance = 5 * time.Minute

// Doer sends an HTTP request; *http.Client is one.
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}

// Deliverer POSTs events to one URL, signed with one secret.
type Deliverer struct {
	url    string
	secret []byte
	client Doer
	clock  keyrot.Clock
}

var _ notify.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer posting to rawURL, signing with secret. client
// nil is an http.Client that follows no redirect (a redirect is an answer
// the sender reports, not one it follows with the signed body); clock nil
// is the wall clock.
func New(rawURL string, secret []byte, client Doer, clock keyrot.Clock) (*Deliverer, error) {
	if _, err := url.Parse(rawURL); err != nil {
		return nil, fmt.Errorf("webhook: parse url: %w", err)
	}
	if len(secret) == 0 {
		return nil, errors.New("webhook: empty secret")
	}
	if client == nil {
		client = NoRedirectClient()
	}
	if clock == nil {
		clock = keyrot.SystemClock{}
	}
	return &Deliverer{url: rawURL, secret: secret, client: client, clock: clock}, nil
}

// NoRedirectClient is an http.Client that reports a redirect instead of
// following it.
func NoRedirectClient() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Deliver POSTs d's payload, signed. A 2xx answer is success; 429 and 5xx
// are retried (429 no sooner than its Retry-After), as are network errors
// and timeouts; any other answer is permanent.
func (w *Deliverer) Deliver(ctx context.Context, d notify.Delivery) error {
	body := d.Payload.JSON()
	ts := strconv.FormatInt(w.clock.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return notify.Permanent(fmt.Errorf("webhook: new request: %w", err))
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "keyrot-webhook/1")
	h.Set(HeaderEvent, d.Payload.Kind)
	h.Set(HeaderDelivery, d.Payload.ID)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(w.secret, ts, body))
	return Check(w.client.Do(req))
}

// Check classifies the answer to a POST: nil for a 2xx; retryable for a
// network error, a timeout, 429 (with its Retry-After) and 5xx; permanent
// for anything else. The error never holds the URL (a Slack webhook URL
// is a secret) nor the answer's body.
func Check(resp *http.Response, err error) error {
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests:
		err := fmt.Errorf("post: receiver answered %s", resp.Status)
		if s, perr := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); perr == nil && s > 0 {
			return notify.RetryAfter(err, time.Duration(s)*time.Second)
		}
		return err
	case code >= 500:
		return fmt.Errorf("post: receiver answered %s", resp.Status)
	default:
		return notify.Permanent(fmt.Errorf("post: receiver answered %s", resp.Status))
	}
}

// Sign is the X-Keyrot-Signature value for body sent at timestamp (the
// X-Keyrot-Timestamp value): "sha256=" and the hex HMAC-SHA256 of
// timestamp + "." + body under secret.
func Sign(secret []byte, timestamp string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors Verify returns.
var (
	ErrMissingHeader = errors.New("webhook: missing X-Keyrot-Timestamp or X-Keyrot-Signature")
	ErrBadSignature  = errors.New("webhook: signature does not match")
	ErrStale         = errors.New("webhook: timestamp outside the tolerance")
)

// Verify checks a delivery's headers against its body, as a receiver
// must before trusting it: the signature is the HMAC-SHA256 of the
// timestamp, ".", and the body under secret (compared in constant time),
// and the timestamp is within tolerance of now (DefaultTolerance if zero).
// Pass the body's bytes exactly as received.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts, sig := h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if ts == "" || sig == "" {
		return ErrMissingHeader
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	sent, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q is not Unix seconds", ErrStale, ts)
	}
	if d := now.Sub(time.Unix(sent, 0)).Abs(); d > tolerance {
		return fmt.Errorf("%w: %s off (tolerance %s)", ErrStale, d.Round(time.Second), tolerance)
	}
	got, ok := strings.CutPrefix(sig, signaturePrefix)
	if !ok {
		return fmt.Errorf("%w: want %q", ErrBadSignature, signaturePrefix+"<hex>")
	}
	raw, err := hex.DecodeString(got)
	if err != nil || !hmac.Equal(raw, mac(secret, ts, body)) {
		return ErrBadSignature
	}
	return nil
}
