package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Sync configures the delivery targets that receive each user's new key
// after it is promoted, before its predecessor is deactivated. Their tokens
// come from the environment only: KEYROT_GITHUB_TOKEN, KEYROT_GITLAB_TOKEN.
type Sync struct {
	// GitHub lists GitHub Actions secrets to keep up to date.
	GitHub []GitHubTarget `yaml:"github,omitempty"`
	// GitLab lists GitLab CI/CD variables to keep up to date.
	GitLab []GitLabTarget `yaml:"gitlab,omitempty"`
	// MaxHold is how long past its due time the previous key stays active while a target has not confirmed its successor (0: until the next rotation is due).
	MaxHold Duration `yaml:"max_hold,omitempty"`
	// OnFailure is what happens once max_hold has passed: hold (the previous key stays active, reported) or proceed (it is deactivated anyway, reported).
	OnFailure string `yaml:"on_failure"`
}

// GitHubTarget is one repository's, environment's or organization's Actions secrets.
type GitHubTarget struct {
	// ID names the target in records, events and metrics (default: derived from repo, environment, org and api_url).
	ID string `yaml:"id,omitempty"`
	// Repo is the repository, owner/name.
	Repo string `yaml:"repo,omitempty"`
	// Environment, with repo, writes that deployment environment's secrets.
	Environment string `yaml:"environment,omitempty"`
	// Org writes organization secrets instead of a repository's.
	Org string `yaml:"org,omitempty"`
	// Visibility of organization secrets: all, private (default) or selected.
	Visibility string `yaml:"visibility,omitempty"`
	// SelectedRepositoryIDs are the repositories that see the secrets, with visibility: selected.
	SelectedRepositoryIDs []int64 `yaml:"selected_repository_ids,omitempty"`
	// APIURL is the REST API (default https://api.github.com; GitHub Enterprise Server: https://HOST/api/v3).
	APIURL string `yaml:"api_url,omitempty"`
	// Names overrides the secret names (default AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
	Names SecretNames `yaml:"names,omitempty"`
	// AppID signs in as this GitHub App (its id or client id) instead of with KEYROT_GITHUB_TOKEN; its private key comes from KEYROT_GITHUB_APP_PRIVATE_KEY.
	AppID string `yaml:"app_id,omitempty"`
	// InstallationID is the App's installation on the repository's or organization's account, with app_id.
	InstallationID int64 `yaml:"installation_id,omitempty"`
	// Users are the IAM users whose keys go there: names or globs ("ci-*").
	Users []string `yaml:"users"`
}

// GitLabTarget is one project's or group's CI/CD variables.
type GitLabTarget struct {
	// ID names the target in records, events and metrics (default: derived from project or group, environment_scope and api_url).
	ID string `yaml:"id,omitempty"`
	// Project is the project's numeric id or full path (group/project).
	Project string `yaml:"project,omitempty"`
	// Group writes group variables instead of a project's: id or full path.
	Group string `yaml:"group,omitempty"`
	// Masked hides the values in job logs.
	Masked bool `yaml:"masked,omitempty"`
	// Protected exposes the variables to protected branches and tags only.
	Protected bool `yaml:"protected,omitempty"`
	// EnvironmentScope limits the variables to matching environments (default "*").
	EnvironmentScope string `yaml:"environment_scope,omitempty"`
	// APIURL is the REST API (default https://gitlab.com/api/v4; self-managed: https://HOST/api/v4).
	APIURL string `yaml:"api_url,omitempty"`
	// Names overrides the variable names (default AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
	Names SecretNames `yaml:"names,omitempty"`
	// Users are the IAM users whose keys go there: names or globs ("ci-*").
	Users []string `yaml:"users"`
}

// SecretNames are the names the access key id and the secret access key are stored under.
type SecretNames struct {
	// AccessKeyID names the access key id's secret (default AWS_ACCESS_KEY_ID).
	AccessKeyID string `yaml:"access_key_id,omitempty"`
	// SecretAccessKey names the secret access key's secret (default AWS_SECRET_ACCESS_KEY).
	SecretAccessKey string `yaml:"secret_access_key,omitempty"`
}

// MaxSyncTargets bounds the targets: each keeps a record in a tag of every
// user's secret, and Secrets Manager allows 50 tags a secret.
const MaxSyncTargets = 20

// Token environment variables of the targets.
const (
	GitHubTokenEnv = "KEYROT_GITHUB_TOKEN"
	GitLabTokenEnv = "KEYROT_GITLAB_TOKEN"
	// GitHubAppKeyEnv holds the PEM private key of the GitHub App that app_id names.
	GitHubAppKeyEnv = "KEYROT_GITHUB_APP_PRIVATE_KEY"
)

var (
	githubSecretName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,254}$`)
	gitlabVarName    = regexp.MustCompile(`^[A-Za-z0-9_]{1,255}$`)
	githubOwnerRepo  = regexp.MustCompile(`^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$`)
	// targetID is what a Secrets Manager tag key may hold after "keyrot:sync:".
	targetID      = regexp.MustCompile(`^[A-Za-z0-9 +\-=._:/@]{1,100}$`)
	notInTargetID = regexp.MustCompile(`[^A-Za-z0-9+\-=._:/@]`)
)

// TargetID is the id the target's records and events use.
func (g GitHubTarget) TargetID() string {
	if g.ID != "" {
		return g.ID
	}
	id := "github"
	if host := apiHost(g.APIURL, "api.github.com"); host != "" {
		id += "@" + host
	}
	switch {
	case g.Org != "":
		id += "/org/" + g.Org
	case g.Environment != "":
		id += "/" + g.Repo + "/env/" + g.Environment
	default:
		id += "/" + g.Repo
	}
	return safeID(id)
}

// TargetID is the id the target's records and events use.
func (g GitLabTarget) TargetID() string {
	if g.ID != "" {
		return g.ID
	}
	id := "gitlab"
	if host := apiHost(g.APIURL, "gitlab.com"); host != "" {
		id += "@" + host
	}
	if g.Group != "" {
		id += "/group/" + g.Group
	} else {
		id += "/project/" + g.Project
	}
	if s := g.EnvironmentScope; s != "" && s != "*" {
		id += "/scope/" + s
	}
	return safeID(id)
}

// apiHost is the API's host unless it is the default one.
func apiHost(apiURL, defaultHost string) string {
	u, err := url.Parse(apiURL)
	if apiURL == "" || err != nil || u.Host == defaultHost {
		return ""
	}
	return u.Host
}

// safeID makes a derived id fit a tag key: other characters become "_",
// and a long id keeps its start and a hash of the whole.
func safeID(id string) string {
	s := notInTargetID.ReplaceAllString(id, "_")
	if len(s) > 100 {
		sum := sha256.Sum256([]byte(id))
		s = s[:91] + "-" + hex.EncodeToString(sum[:4])
	}
	return s
}

func (s Sync) validate() error {
	if n := len(s.GitHub) + len(s.GitLab); n > MaxSyncTargets {
		return &Error{Field: "sync", Reason: fmt.Sprintf("%d targets; at most %d (each keeps a tag on every user's secret, and Secrets Manager allows 50)", n, MaxSyncTargets)}
	}
	seen := map[string]string{}
	unique := func(field, id string) error {
		if !targetID.MatchString(id) {
			return &Error{Field: field + ".id", Value: id, Reason: "must be 1-100 of letters, digits, spaces and +-=._:/@ (it names a Secrets Manager tag)"}
		}
		if other, dup := seen[id]; dup {
			return &Error{Field: field, Value: id, Reason: "the same target as " + other + "; give one an id if they really differ"}
		}
		seen[id] = field
		return nil
	}
	for i, g := range s.GitHub {
		field := fmt.Sprintf("sync.github[%d]", i)
		if err := g.validate(field); err != nil {
			return err
		}
		if err := unique(field, g.TargetID()); err != nil {
			return err
		}
	}
	for i, g := range s.GitLab {
		field := fmt.Sprintf("sync.gitlab[%d]", i)
		if err := g.validate(field); err != nil {
			return err
		}
		if err := unique(field, g.TargetID()); err != nil {
			return err
		}
	}
	return nil
}

func (g GitHubTarget) validate(field string) error {
	switch {
	case g.Repo != "" && g.Org != "":
		return &Error{Field: field, Reason: "set repo or org, not both"}
	case g.Repo == "" && g.Org == "":
		return &Error{Field: field + ".repo", Reason: "required: owner/name (or set org)"}
	case g.Repo != "" && !githubOwnerRepo.MatchString(g.Repo):
		return &Error{Field: field + ".repo", Value: g.Repo, Reason: "want owner/name"}
	case g.Environment != "" && g.Repo == "":
		return &Error{Field: field + ".environment", Value: g.Environment, Reason: "environment secrets belong to a repo: set repo"}
	case g.Org == "" && (g.Visibility != "" || len(g.SelectedRepositoryIDs) > 0):
		return &Error{Field: field + ".visibility", Value: g.Visibility, Reason: "only for org secrets"}
	case (g.AppID == "") != (g.InstallationID == 0) || g.InstallationID < 0:
		return &Error{Field: field + ".installation_id", Reason: "set app_id and installation_id together (a GitHub App's installation), or neither (KEYROT_GITHUB_TOKEN)"}
	}
	switch g.Visibility {
	case "", "all", "private":
		if len(g.SelectedRepositoryIDs) > 0 {
			return &Error{Field: field + ".selected_repository_ids", Reason: "only with visibility: selected"}
		}
	case "selected":
		if len(g.SelectedRepositoryIDs) == 0 {
			return &Error{Field: field + ".selected_repository_ids", Reason: "required with visibility: selected (the ids of the repositories that see the secrets)"}
		}
	default:
		return &Error{Field: field + ".visibility", Value: g.Visibility, Reason: "must be all, private or selected"}
	}
	for sub, name := range map[string]string{"access_key_id": g.Names.AccessKeyID, "secret_access_key": g.Names.SecretAccessKey} {
		if name != "" && (!githubSecretName.MatchString(name) || strings.HasPrefix(strings.ToUpper(name), "GITHUB_")) {
			return &Error{Field: field + ".names." + sub, Value: name, Reason: "a GitHub secret name is letters, digits and _, not starting with a digit or GITHUB_"}
		}
	}
	return validateTarget(field, g.APIURL, g.Names, g.Users)
}

func (g GitLabTarget) validate(field string) error {
	switch {
	case g.Project != "" && g.Group != "":
		return &Error{Field: field, Reason: "set project or group, not both"}
	case g.Project == "" && g.Group == "":
		return &Error{Field: field + ".project", Reason: "required: the project's id or path (or set group)"}
	case strings.ContainsAny(g.EnvironmentScope, " \t\n"):
		return &Error{Field: field + ".environment_scope", Value: g.EnvironmentScope, Reason: "must not contain spaces"}
	}
	for sub, name := range map[string]string{"access_key_id": g.Names.AccessKeyID, "secret_access_key": g.Names.SecretAccessKey} {
		if name != "" && !gitlabVarName.MatchString(name) {
			return &Error{Field: field + ".names." + sub, Value: name, Reason: "a GitLab variable key is 1-255 of letters, digits and _"}
		}
	}
	return validateTarget(field, g.APIURL, g.Names, g.Users)
}

// validateTarget checks what every target has: its API's URL, two distinct
// names and the users it carries.
func validateTarget(field, apiURL string, names SecretNames, users []string) error {
	if apiURL != "" {
		u, err := url.Parse(apiURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			return &Error{Field: field + ".api_url", Value: apiURL, Reason: "must be an https:// URL (http:// only on localhost)"}
		}
	}
	if names.AccessKeyID != "" && names.AccessKeyID == names.SecretAccessKey {
		return &Error{Field: field + ".names", Value: names.AccessKeyID, Reason: "the access key id and the secret access key need different names"}
	}
	if len(users) == 0 {
		return &Error{Field: field + ".users", Reason: "required: the IAM users (names or globs such as ci-*) whose keys go to this target"}
	}
	for i, u := range users {
		if _, err := path.Match(u, ""); err != nil || strings.TrimSpace(u) == "" {
			return &Error{Field: fmt.Sprintf("%s.users[%d]", field, i), Value: u, Reason: "not a user name or glob"}
		}
	}
	return nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}
