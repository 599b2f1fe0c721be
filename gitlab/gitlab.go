// Package gitlab delivers keys to GitLab CI/CD variables of a project or a
// group. It implements keyrot.Deliverer on GitLab's REST API v4 (gitlab.com
// or a self-managed instance at https://HOST/api/v4).
//
// A variable is updated with PUT .../variables/:key, selecting its
// environment scope with filter[environment_scope] (a key may exist once
// per scope), and created with POST .../variables when GitLab answers 404.
package gitlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/keypair"
	"github.com/keyrot/keyrot/internal/restclient"
)

// DefaultAPIURL is gitlab.com's REST API.
const DefaultAPIURL = "https://gitlab.com/api/v4"

// Config says which variables a Target writes.
type Config struct {
	// APIURL is the REST API's base URL (default DefaultAPIURL).
	APIURL string
	// Token is a personal, project or group access token with the api
	// scope; it is sent as PRIVATE-TOKEN and never appears in an error.
	Token string
	// Exactly one of Project and Group: a numeric id or a full path
	// ("group/sub/project"), which is URL-encoded here.
	Project, Group string
	// Masked hides the values in job logs; Protected exposes them to
	// protected branches and tags only.
	Masked, Protected bool
	// EnvironmentScope limits the variables to matching environments
	// (default "*": all).
	EnvironmentScope string
	// AccessKeyIDName and SecretAccessKeyName name the two variables
	// (defaults AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
	AccessKeyIDName, SecretAccessKeyName string
	// Client sends the requests (nil: timeouts and retries by default).
	Client *restclient.Client
}

var _ keyrot.Deliverer = (*Target)(nil)

// Target writes a user's key into GitLab CI/CD variables.
type Target struct {
	cfg    Config
	client *restclient.Client
	base   string // .../projects/:id/variables or .../groups/:id/variables
}

// New checks cfg and returns a Target.
func New(cfg Config) (*Target, error) {
	if cfg.APIURL == "" {
		cfg.APIURL = DefaultAPIURL
	}
	if cfg.EnvironmentScope == "" {
		cfg.EnvironmentScope = "*"
	}
	api, err := restclient.BaseURL(cfg.APIURL, "https://gitlab.com/api/v4 or https://HOST/api/v4")
	if err != nil {
		return nil, fmt.Errorf("gitlab: %w", err)
	}
	if cfg.Token == "" {
		return nil, errors.New("gitlab: no token (set KEYROT_GITLAB_TOKEN)")
	}
	var base string
	switch {
	case cfg.Project != "" && cfg.Group != "":
		return nil, errors.New("gitlab: set project or group, not both")
	case cfg.Project != "":
		base = api + "/projects/" + url.PathEscape(cfg.Project) + "/variables"
	case cfg.Group != "":
		base = api + "/groups/" + url.PathEscape(cfg.Group) + "/variables"
	default:
		return nil, errors.New("gitlab: set project (id or path) or group")
	}
	client := cfg.Client.With(http.Header{
		"Private-Token": {cfg.Token},
		"Accept":        {"application/json"},
		"User-Agent":    {"keyrot"},
	})
	return &Target{cfg: cfg, client: client, base: base}, nil
}

// Deliver writes the secret access key, then the access key id (see
// keypair.Write).
func (t *Target) Deliver(ctx context.Context, creds keyrot.Credentials) error {
	if err := keypair.Write(ctx, creds, t.cfg.AccessKeyIDName, t.cfg.SecretAccessKeyName, t.set); err != nil {
		return fmt.Errorf("gitlab: deliver key %s of %q: %w", creds.AccessKeyID, creds.UserName, err)
	}
	return nil
}

// variable is the body of GitLab's create and update calls.
type variable struct {
	Key              string `json:"key,omitempty"`
	Value            string `json:"value"`
	VariableType     string `json:"variable_type"`
	Protected        bool   `json:"protected"`
	Masked           bool   `json:"masked"`
	Raw              bool   `json:"raw"`
	EnvironmentScope string `json:"environment_scope"`
}

// set updates the variable in its environment scope, or creates it.
func (t *Target) set(ctx context.Context, name, value string) error {
	v := variable{Value: value, VariableType: "env_var", Protected: t.cfg.Protected, Masked: t.cfg.Masked,
		Raw: true, EnvironmentScope: t.cfg.EnvironmentScope} // raw: a "$" in a key is not expanded
	update := t.base + "/" + url.PathEscape(name) + "?" + url.Values{"filter[environment_scope]": {t.cfg.EnvironmentScope}}.Encode()
	err := t.client.Do(ctx, http.MethodPut, update, v, nil)
	if !restclient.IsStatus(err, http.StatusNotFound) {
		return err
	}
	v.Key = name
	if err := t.client.Do(ctx, http.MethodPost, t.base, v, nil); err != nil {
		return fmt.Errorf("create (no variable in scope %q): %w", t.cfg.EnvironmentScope, err)
	}
	return nil
}
