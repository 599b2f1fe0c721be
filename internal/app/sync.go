package app

import (
	"context"
	"fmt"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/github"
	"github.com/keyrot/keyrot/gitlab"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/restclient"
)

// syncClient bounds each delivery request, so that a target's retries
// (three tries, backoff up to 10 s) fit well inside a rotation step.
func syncClient() *restclient.Client {
	return &restclient.Client{Timeout: 15 * time.Second, Attempts: 3, MaxBackoff: 10 * time.Second}
}

// deliveryTargets builds the targets of the sync section. Tokens come from
// lookup (KEYROT_GITHUB_TOKEN, KEYROT_GITLAB_TOKEN); a missing one is a
// config error. With a nil lookup (a process that only shows state: status,
// report, the UI) the targets are named but refuse to deliver.
func deliveryTargets(s config.Sync, lookup func(string) (string, bool), client *restclient.Client) ([]keyrot.DeliveryTarget, error) {
	if client == nil {
		client = syncClient()
	}
	token := func(env string) (string, error) {
		if lookup == nil {
			return "", nil
		}
		if v, ok := lookup(env); ok && v != "" {
			return v, nil
		}
		return "", &config.Error{Field: env, Reason: "not set: the sync targets need it (see docs/sync.md for the scopes)"}
	}
	var out []keyrot.DeliveryTarget
	apps := map[string]*github.App{} // one installation token per App installation
	for i, g := range s.GitHub {
		var tok string
		var ghApp *github.App
		var err error
		if g.AppID == "" {
			tok, err = token(config.GitHubTokenEnv)
		} else {
			ghApp, err = githubApp(apps, g, token)
		}
		if err != nil {
			return nil, err
		}
		var d keyrot.Deliverer = viewOnly{}
		if lookup != nil {
			t, err := github.New(github.Config{APIURL: g.APIURL, Token: tok, App: ghApp, Repo: g.Repo, Org: g.Org, Environment: g.Environment,
				Visibility: g.Visibility, SelectedRepositoryIDs: g.SelectedRepositoryIDs,
				AccessKeyIDName: g.Names.AccessKeyID, SecretAccessKeyName: g.Names.SecretAccessKey, Client: client})
			if err != nil {
				return nil, &config.Error{Field: fmt.Sprintf("sync.github[%d]", i), Reason: err.Error()}
			}
			d = t
		}
		out = append(out, keyrot.DeliveryTarget{ID: g.TargetID(), Users: g.Users, Deliverer: d})
	}
	for i, g := range s.GitLab {
		tok, err := token(config.GitLabTokenEnv)
		if err != nil {
			return nil, err
		}
		var d keyrot.Deliverer = viewOnly{}
		if lookup != nil {
			t, err := gitlab.New(gitlab.Config{APIURL: g.APIURL, Token: tok, Project: g.Project, Group: g.Group,
				Masked: g.Masked, Protected: g.Protected, EnvironmentScope: g.EnvironmentScope,
				AccessKeyIDName: g.Names.AccessKeyID, SecretAccessKeyName: g.Names.SecretAccessKey, Client: client})
			if err != nil {
				return nil, &config.Error{Field: fmt.Sprintf("sync.gitlab[%d]", i), Reason: err.Error()}
			}
			d = t
		}
		out = append(out, keyrot.DeliveryTarget{ID: g.TargetID(), Users: g.Users, Deliverer: d})
	}
	return out, nil
}

// githubApp returns the App installation a target signs in as, one per
// app_id, installation_id and API (nil in a process that only shows state).
func githubApp(apps map[string]*github.App, g config.GitHubTarget, token func(string) (string, error)) (*github.App, error) {
	pemKey, err := token(config.GitHubAppKeyEnv)
	if err != nil || pemKey == "" {
		return nil, err
	}
	id := fmt.Sprintf("%s/%d@%s", g.AppID, g.InstallationID, g.APIURL)
	if a := apps[id]; a != nil {
		return a, nil
	}
	key, err := github.ParsePrivateKey([]byte(pemKey))
	if err != nil {
		return nil, &config.Error{Field: config.GitHubAppKeyEnv, Reason: err.Error()}
	}
	apps[id] = &github.App{ID: g.AppID, InstallationID: g.InstallationID, Key: key}
	return apps[id], nil
}

// viewOnly stands for a target in a process that only shows state.
type viewOnly struct{}

func (viewOnly) Deliver(context.Context, keyrot.Credentials) error {
	return fmt.Errorf("this process only shows state; keyrot run or rotate delivers")
}
