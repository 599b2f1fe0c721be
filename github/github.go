// Package github delivers keys to GitHub Actions secrets: a repository's,
// a repository environment's or an organization's. It implements
// keyrot.Deliverer on GitHub's REST API (github.com or GitHub Enterprise
// Server, whose API lives at https://HOST/api/v3).
//
// GitHub accepts a secret only encrypted with the owner's public key, as a
// libsodium sealed box (golang.org/x/crypto/nacl/box SealAnonymous), sent
// with the key's id. The public key is cached; when GitHub refuses a PUT
// with 422 (the key changed) it is fetched again and the PUT repeated once.
package github

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/crypto/nacl/box"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/keypair"
	"github.com/keyrot/keyrot/internal/restclient"
)

// DefaultAPIURL is github.com's REST API.
const DefaultAPIURL = "https://api.github.com"

// Config says which secrets a Target writes.
type Config struct {
	// APIURL is the REST API's base URL (default DefaultAPIURL).
	APIURL string
	// Token authenticates (a fine-grained or classic personal access
	// token, or an installation token); it is sent as a Bearer token and
	// never appears in an error.
	Token string
	// App, instead of Token, authenticates as a GitHub App installation.
	App *App
	// Exactly one of Repo ("owner/name") and Org. Environment, with Repo,
	// writes the environment's secrets.
	Repo, Org, Environment string
	// Visibility of an organization secret: all, private or selected
	// (default private); SelectedRepositoryIDs with selected.
	Visibility            string
	SelectedRepositoryIDs []int64
	// AccessKeyIDName and SecretAccessKeyName name the two secrets
	// (defaults AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
	AccessKeyIDName, SecretAccessKeyName string
	// Client sends the requests (nil: timeouts and retries by default).
	Client *restclient.Client
}

var _ keyrot.Deliverer = (*Target)(nil)

// Target writes a user's key into GitHub Actions secrets.
type Target struct {
	cfg    Config
	client *restclient.Client // with the token, unless an App signs in
	api    string
	base   string // the secrets collection: .../actions/secrets or .../environments/E/secrets

	mu  sync.Mutex
	key *publicKey // cached
}

type publicKey struct {
	KeyID string `json:"key_id"`
	Key   string `json:"key"`
}

// New checks cfg and returns a Target.
func New(cfg Config) (*Target, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	api, err := restclient.BaseURL(cfg.APIURL, "https://api.github.com or https://HOST/api/v3")
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	switch {
	case cfg.Token == "" && cfg.App == nil:
		return nil, errors.New("github: no token (set KEYROT_GITHUB_TOKEN) and no app")
	case cfg.App != nil && (cfg.App.ID == "" || cfg.App.InstallationID <= 0 || cfg.App.Key == nil):
		return nil, errors.New("github: app: needs its id, installation id and private key")
	}
	var base string
	switch {
	case cfg.Repo != "" && cfg.Org != "":
		return nil, errors.New("github: set repo or org, not both")
	case cfg.Repo != "":
		owner, name, ok := strings.Cut(cfg.Repo, "/")
		if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("github: repo %q: want owner/name", cfg.Repo)
		}
		base = api + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name)
		if cfg.Environment != "" {
			base += "/environments/" + url.PathEscape(cfg.Environment) + "/secrets"
		} else {
			base += "/actions/secrets"
		}
	case cfg.Org != "":
		if cfg.Environment != "" {
			return nil, errors.New("github: environment needs a repo, not an org")
		}
		base = api + "/orgs/" + url.PathEscape(cfg.Org) + "/actions/secrets"
		if cfg.Visibility == "" {
			cfg.Visibility = "private"
		}
		switch cfg.Visibility {
		case "all", "private", "selected":
		default:
			return nil, fmt.Errorf("github: visibility %q: want all, private or selected", cfg.Visibility)
		}
	default:
		return nil, errors.New("github: set repo (owner/name) or org")
	}
	client := cfg.Client.With(http.Header{
		"Accept":               {"application/vnd.github+json"},
		"X-Github-Api-Version": {"2022-11-28"},
		"User-Agent":           {"keyrot"},
	})
	if cfg.App == nil {
		client = client.With(http.Header{"Authorization": {"Bearer " + cfg.Token}})
	}
	return &Target{cfg: cfg, client: client, api: api, base: base}, nil
}

// Deliver writes the secret access key, then the access key id (see
// keypair.Write).
func (t *Target) Deliver(ctx context.Context, creds keyrot.Credentials) error {
	client := t.client
	if t.cfg.App != nil {
		tok, err := t.cfg.App.installationToken(ctx, client, t.api)
		if err != nil {
			return fmt.Errorf("github: deliver key %s of %q: %w", creds.AccessKeyID, creds.UserName, err)
		}
		client = client.With(http.Header{"Authorization": {"Bearer " + tok}})
	}
	put := func(ctx context.Context, name, value string) error { return t.put(ctx, client, name, value) }
	if err := keypair.Write(ctx, creds, t.cfg.AccessKeyIDName, t.cfg.SecretAccessKeyName, put); err != nil {
		return fmt.Errorf("github: deliver key %s of %q: %w", creds.AccessKeyID, creds.UserName, err)
	}
	return nil
}

// put encrypts value with the public key and writes it; a 422 answer to a
// cached key makes it fetch the key again and try once more.
func (t *Target) put(ctx context.Context, client *restclient.Client, name, value string) error {
	for refetched := false; ; refetched = true {
		key, cached, err := t.publicKey(ctx, client, refetched)
		if err != nil {
			return err
		}
		sealed, err := seal(key, value)
		if err != nil {
			return err
		}
		body := map[string]any{"encrypted_value": sealed, "key_id": key.KeyID}
		if t.cfg.Org != "" {
			body["visibility"] = t.cfg.Visibility
			if t.cfg.Visibility == "selected" {
				body["selected_repository_ids"] = t.cfg.SelectedRepositoryIDs
			}
		}
		err = client.Do(ctx, http.MethodPut, t.base+"/"+url.PathEscape(name), body, nil)
		if err != nil && cached && !refetched && restclient.IsStatus(err, http.StatusUnprocessableEntity) {
			continue // the public key may have changed since it was cached
		}
		return err
	}
}

// publicKey returns the owner's public key, from the cache unless fresh;
// cached says whether it came from the cache.
func (t *Target) publicKey(ctx context.Context, client *restclient.Client, fresh bool) (publicKey, bool, error) {
	t.mu.Lock()
	k := t.key
	t.mu.Unlock()
	if k != nil && !fresh {
		return *k, true, nil
	}
	var got publicKey
	if err := client.Do(ctx, http.MethodGet, t.base+"/public-key", nil, &got); err != nil {
		return publicKey{}, false, fmt.Errorf("get public key: %w", err)
	}
	if got.KeyID == "" || got.Key == "" {
		return publicKey{}, false, errors.New("get public key: answer without key_id and key")
	}
	t.mu.Lock()
	t.key = &got
	t.mu.Unlock()
	return got, false, nil
}

// seal encrypts value for the holder of key, as GitHub requires: a
// libsodium sealed box of the value, base64-encoded.
func seal(key publicKey, value string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(key.Key)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("public key %s: not a base64 Curve25519 key", key.KeyID)
	}
	var pub [32]byte
	copy(pub[:], raw)
	sealed, err := box.SealAnonymous(nil, []byte(value), &pub, rand.Reader)
	if err != nil {
		return "", fmt.Errorf("encrypt with public key %s: %w", key.KeyID, err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}
