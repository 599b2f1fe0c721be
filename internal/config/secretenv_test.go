package config_test

import (
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
)

// TestSecretVars: every secret variable the config names and the
// environment lacks is reported at once, by name; set ones pass, and no
// value ever appears in the error.
func TestSecretVars(t *testing.T) {
	cfg := config.Default()
	cfg.Notify.Webhooks = []config.Webhook{{URL: "https://hooks.example.com/k", SecretEnv: "HOOK_SECRET"}}
	cfg.Sync.GitHub = []config.GitHubTarget{{Repo: "acme/app", Users: []string{"ci-*"}}, {Repo: "acme/web", AppID: "42", InstallationID: 7, Users: []string{"ci-*"}}}
	cfg.Sync.GitLab = []config.GitLabTarget{{Project: "acme/app", Users: []string{"ci-*"}}}
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	err := cfg.SecretVars(lookup)
	for _, name := range []string{"notify.webhooks[0].secret_env", config.GitHubTokenEnv, config.GitHubAppKeyEnv, config.GitLabTokenEnv} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("SecretVars with nothing set = %v, want %s named", err, name)
		}
	}
	env["HOOK_SECRET"], env[config.GitHubTokenEnv], env[config.GitHubAppKeyEnv], env[config.GitLabTokenEnv] = "zzsecret1", "zzsecret2", "zzsecret3", "zzsecret4"
	if err := cfg.SecretVars(lookup); err != nil {
		t.Errorf("SecretVars with everything set = %v", err)
	}
	delete(env, config.GitLabTokenEnv)
	if err := cfg.SecretVars(lookup); err == nil || strings.Contains(err.Error(), "zz") || !strings.Contains(err.Error(), config.GitLabTokenEnv) {
		t.Errorf("SecretVars = %v, want only %s named and no value", err, config.GitLabTokenEnv)
	}
}
