package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// sigV4Auth is a parsed "Authorization: AWS4-HMAC-SHA256 ..." header.
type sigV4Auth struct {
	AccessKeyID   string
	Date          string // yyyymmdd of the credential scope
	Region        string
	Service       string
	SignedHeaders string // as sent, e.g. "content-type;host;x-amz-date"
	Signature     string
}

const amzDateFormat = "20060102T150405Z"

// parseAuthorization parses the SigV4 Authorization header. It returns
// (nil, nil) when the request carries no Authorization header at all.
func parseAuthorization(r *http.Request) (*sigV4Auth, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if r.URL.Query().Has("X-Amz-Signature") {
			return nil, errorf(http.StatusForbidden, "IncompleteSignature", "The sandbox does not accept presigned requests.")
		}
		return nil, nil
	}
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return nil, errorf(http.StatusBadRequest, "IncompleteSignature", "Unsupported authorization type: only AWS4-HMAC-SHA256 is accepted.")
	}
	a := &sigV4Auth{}
	var cred string
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			a.SignedHeaders = v
		case "Signature":
			a.Signature = v
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[0] == "" || scope[4] != "aws4_request" || a.SignedHeaders == "" || a.Signature == "" {
		return nil, errorf(http.StatusBadRequest, "IncompleteSignature",
			"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters with a credential scope of the form AKID/date/region/service/aws4_request.")
	}
	a.AccessKeyID, a.Date, a.Region, a.Service = scope[0], scope[1], scope[2], scope[3]
	return a, nil
}

// Authentication failures, in each service's words.
const (
	authMissing = iota
	authIncomplete
	authUnknownKey
	authBadSignature
	authExpired
)

func authError(service string, kind int, detail string) *apiError {
	json := service != svcIAM && service != svcSTS
	switch kind {
	case authExpired:
		const msg = "The security token included in the request is expired"
		switch service {
		case svcIAM, svcSTS:
			return errorf(http.StatusForbidden, "ExpiredToken", msg)
		case svcSES:
			return errorf(http.StatusForbidden, "ExpiredTokenException", msg)
		default:
			return errorf(http.StatusBadRequest, "ExpiredTokenException", msg)
		}
	case authMissing:
		if json {
			return errorf(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
		}
		return errorf(http.StatusForbidden, "MissingAuthenticationToken", "Request is missing Authentication Token")
	case authIncomplete:
		if json {
			return errorf(http.StatusBadRequest, "IncompleteSignatureException", "%s", detail)
		}
		return errorf(http.StatusBadRequest, "IncompleteSignature", "%s", detail)
	case authUnknownKey:
		const msg = "The security token included in the request is invalid."
		switch service {
		case svcSecretsManager, svcOrganizations, svcSQS:
			return errorf(http.StatusBadRequest, "UnrecognizedClientException", msg)
		case svcSES:
			return errorf(http.StatusForbidden, "UnrecognizedClientException", msg)
		default:
			return errorf(http.StatusForbidden, "InvalidClientTokenId", msg)
		}
	default:
		const msg = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
		if service == svcSecretsManager || service == svcOrganizations || service == svcSQS {
			return errorf(http.StatusBadRequest, "InvalidSignatureException", msg)
		}
		return errorf(http.StatusForbidden, "SignatureDoesNotMatch", msg)
	}
}

// authenticate finds who signed the request and checks the signature. On
// success it records c.caller and, for IAM user keys, the key's last use.
func (s *Server) authenticate(r *http.Request, c *call, a *sigV4Auth, parseErr *apiError) *apiError {
	if parseErr != nil {
		return authError(c.service, authIncomplete, parseErr.Message)
	}
	if a == nil {
		return authError(c.service, authMissing, "")
	}
	now := s.clock.Now()
	secret, p, state := s.credential(a.AccessKeyID, r.Header.Get("X-Amz-Security-Token"), now)
	if state == sessionUnknown {
		return authError(c.service, authUnknownKey, "")
	}
	if !s.verifySignature(r, c.body, a, secret) {
		return authError(c.service, authBadSignature, "")
	}
	if state == sessionExpired {
		return authError(c.service, authExpired, "")
	}
	c.caller = p
	if !p.Admin {
		s.org.get(p.Account).iam.recordUse(a.AccessKeyID, now, c.service, a.Region)
	}
	return nil
}

// credential finds the secret and the principal of an access key: the
// admin's (the management account's root), a role session's (its token
// must match) or an IAM user's in any account. state is sessionValid,
// sessionUnknown or, for a role session past its expiry, sessionExpired.
func (s *Server) credential(akid, token string, now time.Time) (secret string, p principal, state int) {
	if akid == s.opts.AdminAccessKeyID {
		mgmt := s.org.management().ID
		return s.opts.AdminSecretAccessKey, principal{AccessKeyID: akid, Admin: true, ARN: rootARN(mgmt), Account: mgmt}, sessionValid
	}
	if strings.HasPrefix(akid, "ASIA") {
		sess, state := s.sts.lookup(akid, token, now)
		if state == sessionUnknown {
			return "", principal{}, state
		}
		return sess.Secret, principal{AccessKeyID: akid, Admin: true, ARN: assumedRoleARN(sess.Account, sess.Role, sess.Session),
			Account: sess.Account, Role: sess.Role, Session: sess.Session}, state
	}
	for _, acct := range s.org.accounts {
		if secret, p, ok := acct.iam.credential(akid, now); ok {
			return secret, p, sessionValid
		}
	}
	return "", principal{}, sessionUnknown
}

// ignoredSignedHeaders are headers the SDK signer never signs; a request
// claiming to have signed them cannot be re-signed here.
func ignoredSignedHeaders(h string) bool {
	switch h {
	case "authorization", "user-agent", "x-amzn-trace-id", "expect", "transfer-encoding":
		return true
	}
	return false
}

// verifySignature re-signs a copy of the request carrying only the headers
// the client signed, with the same date and payload hash, using the SDK's
// SigV4 signer, and compares the signatures in constant time.
func (s *Server) verifySignature(r *http.Request, body []byte, a *sigV4Auth, secret string) bool {
	date := r.Header.Get("X-Amz-Date")
	signingTime, err := time.Parse(amzDateFormat, date)
	if err != nil {
		return false
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" {
		if h != "UNSIGNED-PAYLOAD" && h != payloadHash {
			return false
		}
		payloadHash = h
	}

	clone := &http.Request{
		Method: r.Method,
		URL: &url.URL{
			Scheme:   "http",
			Host:     r.Host,
			Path:     r.URL.Path,
			RawPath:  r.URL.RawPath,
			RawQuery: r.URL.RawQuery,
		},
		Host:   r.Host,
		Header: make(http.Header),
	}
	sawHost := false
	for _, h := range strings.Split(a.SignedHeaders, ";") {
		switch {
		case h == "host":
			sawHost = true
		case h == "content-length":
			clone.ContentLength = int64(len(body))
		case ignoredSignedHeaders(h):
			return false
		case h == "x-amz-date":
			// The signer sets it from signingTime.
		default:
			vals := r.Header.Values(h)
			if len(vals) == 0 {
				return false
			}
			clone.Header[http.CanonicalHeaderKey(h)] = vals
		}
	}
	if !sawHost {
		return false
	}
	creds := aws.Credentials{AccessKeyID: a.AccessKeyID, SecretAccessKey: secret}
	if err := s.signer.SignHTTP(r.Context(), creds, clone, payloadHash, a.Service, a.Region, signingTime); err != nil {
		return false
	}
	got, apiErr := parseAuthorization(clone)
	if apiErr != nil || got == nil {
		return false
	}
	if got.SignedHeaders != a.SignedHeaders || got.Date != a.Date {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got.Signature), []byte(a.Signature)) == 1
}

func rootARN(account string) string { return "arn:aws:iam::" + account + ":root" }
