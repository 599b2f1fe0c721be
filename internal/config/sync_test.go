package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/config"
)

const syncExample = `
users: {names: [ci-bot, deploy]}
notify: {via: log}
sync:
  max_hold: 1h
  on_failure: proceed
  github:
    - repo: acme/app
      users: [ci-*]
    - repo: acme/app
      environment: production
      users: [deploy]
    - org: acme
      visibility: selected
      selected_repository_ids: [1296269]
      api_url: https://github.example.com/api/v3
      names: {access_key_id: DEPLOY_KEY_ID, secret_access_key: DEPLOY_SECRET}
      users: [deploy]
  gitlab:
    - project: acme/app
      masked: true
      protected: true
      environment_scope: production/*
      users: [ci-bot]
    - group: "42"
      api_url: https://gitlab.example.com/api/v4
      users: ["*"]
`

func TestSyncParsesAndDerivesIDs(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader(syncExample))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if p := cfg.Policy(); p.SyncMaxHold != time.Hour || p.SyncOnFailure != keyrot.SyncProceed {
		t.Errorf("policy sync = %s %q", p.SyncMaxHold, p.SyncOnFailure)
	}
	var ids []string
	for _, g := range cfg.Sync.GitHub {
		ids = append(ids, g.TargetID())
	}
	for _, g := range cfg.Sync.GitLab {
		ids = append(ids, g.TargetID())
	}
	want := []string{"github/acme/app", "github/acme/app/env/production", "github@github.example.com/org/acme",
		"gitlab/project/acme/app/scope/production/_", "gitlab@gitlab.example.com/group/42"}
	if strings.Join(ids, " ") != strings.Join(want, " ") {
		t.Errorf("ids = %q, want %q", ids, want)
	}
	if g := cfg.Sync.GitHub[2]; g.Names.AccessKeyID != "DEPLOY_KEY_ID" || g.SelectedRepositoryIDs[0] != 1296269 {
		t.Errorf("org target = %+v", g)
	}
	if got := config.Default().Sync.OnFailure; got != "hold" {
		t.Errorf("default on_failure = %q, want hold", got)
	}
	long := config.GitLabTarget{Project: strings.Repeat("very-long-group/", 10) + "app"}
	if id := long.TargetID(); len(id) > 100 {
		t.Errorf("derived id %q is %d long", id, len(id))
	}
}

func TestSyncValidationNamesTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, field string }{
		{"github: [{users: [a]}]", "sync.github[0].repo"},
		{"github: [{repo: acme, users: [a]}]", "sync.github[0].repo"},
		{"github: [{repo: acme/app, org: acme, users: [a]}]", "sync.github[0]"},
		{"github: [{org: acme, environment: prod, users: [a]}]", "sync.github[0].environment"},
		{"github: [{org: acme, visibility: public, users: [a]}]", "sync.github[0].visibility"},
		{"github: [{org: acme, visibility: selected, users: [a]}]", "sync.github[0].selected_repository_ids"},
		{"github: [{repo: acme/app, visibility: all, users: [a]}]", "sync.github[0].visibility"},
		{"github: [{repo: acme/app}]", "sync.github[0].users"},
		{"github: [{repo: acme/app, users: ['[']}]", "sync.github[0].users[0]"},
		{"github: [{repo: acme/app, api_url: 'http://github.example.com', users: [a]}]", "sync.github[0].api_url"},
		{"github: [{repo: acme/app, names: {access_key_id: GITHUB_KEY}, users: [a]}]", "sync.github[0].names.access_key_id"},
		{"github: [{repo: acme/app, names: {access_key_id: K, secret_access_key: K}, users: [a]}]", "sync.github[0].names"},
		{"github: [{repo: acme/app, users: [a]}, {repo: acme/app, users: [b]}]", "sync.github[1]"},
		{"github: [{repo: acme/app, id: 'a*b', users: [a]}]", "sync.github[0].id"},
		{"github: [{repo: acme/app, app_id: '1234', users: [a]}]", "sync.github[0].installation_id"},
		{"github: [{repo: acme/app, installation_id: 5, users: [a]}]", "sync.github[0].installation_id"},
		{"gitlab: [{users: [a]}]", "sync.gitlab[0].project"},
		{"gitlab: [{project: '1', group: '2', users: [a]}]", "sync.gitlab[0]"},
		{"gitlab: [{project: '1', names: {secret_access_key: 'A-B'}, users: [a]}]", "sync.gitlab[0].names.secret_access_key"},
		{"gitlab: [{project: '1', environment_scope: 'a b', users: [a]}]", "sync.gitlab[0].environment_scope"},
		{"on_failure: retry", "sync.on_failure"},
	} {
		t.Run(tc.field, func(t *testing.T) {
			body := "users: {names: [ci-bot]}\nnotify: {via: log}\nsync:\n  " + strings.ReplaceAll(tc.yaml, "\n", "\n  ") + "\n"
			cfg, err := config.Parse(strings.NewReader(body))
			if err == nil {
				err = cfg.Validate()
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("%s: error %v, want one on field %s", tc.yaml, err, tc.field)
			}
		})
	}
}
