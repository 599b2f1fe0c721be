package github

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/restclient"
)

// App authenticates as a GitHub App installation instead of with a
// personal token: it signs a JWT with the App's private key (RS256, valid
// 9 minutes), exchanges it for an installation token (POST
// /app/installations/{id}/access_tokens, valid an hour) and reuses that
// token until 5 minutes before it expires. The App needs the same
// permissions as a fine-grained token (docs/sync.md).
type App struct {
	// ID is the App's id or client id (the JWT's issuer).
	ID string
	// InstallationID is the App's installation on the repository's or
	// organization's account.
	InstallationID int64
	// Key is the App's private key (see ParsePrivateKey).
	Key *rsa.PrivateKey
	// Clock tells the time for the JWT and the token's expiry (nil: the
	// wall clock).
	Clock keyrot.Clock

	mu      sync.Mutex
	token   string
	expires time.Time
}

// ParsePrivateKey reads the PEM private key GitHub issues for an App
// (PKCS#1, or PKCS#8). Errors never include the key.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("github: app private key: not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("github: app private key: neither a PKCS#1 nor a PKCS#8 RSA key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("github: app private key: not an RSA key")
	}
	return rk, nil
}

// installationToken returns a token for the installation, minting one
// through client at api when the cached one is missing or expires soon.
func (a *App) installationToken(ctx context.Context, client *restclient.Client, api string) (string, error) {
	clock := a.Clock
	if clock == nil {
		clock = keyrot.SystemClock{}
	}
	now := clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && now.Before(a.expires.Add(-5*time.Minute)) {
		return a.token, nil
	}
	jwt, err := a.jwt(now)
	if err != nil {
		return "", err
	}
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	url := api + "/app/installations/" + strconv.FormatInt(a.InstallationID, 10) + "/access_tokens"
	if err := client.With(http.Header{"Authorization": {"Bearer " + jwt}}).Do(ctx, http.MethodPost, url, nil, &out); err != nil {
		return "", fmt.Errorf("github: app %s: installation token: %w", a.ID, err)
	}
	if out.Token == "" {
		return "", fmt.Errorf("github: app %s: installation token: answer without a token", a.ID)
	}
	a.token, a.expires = out.Token, out.ExpiresAt
	return a.token, nil
}

// jwt signs the App's claim for now: issued a minute early (GitHub's
// advice against clock drift), expiring in 9 minutes (at most 10 allowed).
func (a *App) jwt(now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix(), "iss": a.ID})
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, a.Key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("github: app %s: sign JWT: %w", a.ID, err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
