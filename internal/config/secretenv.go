package config

// SecretVars reports, at once, every environment variable the config names
// for a secret that lookup does not find set: the channels' (the webhooks'
// HMAC secrets, Slack's URL) and the sync targets' tokens. The engine needs
// them when it is built; `keyrot validate` checks them here, so that it
// rejects what `keyrot run` rejects. Values are never part of the error.
func (c Config) SecretVars(lookup func(string) (string, bool)) error {
	var errs Errors
	if _, _, err := c.Notify.ChannelSecrets(lookup); err != nil {
		errs.addErr("notify", err)
	}
	set := func(env string) bool { v, ok := lookup(env); return ok && v != "" }
	need := map[string]bool{}
	for _, g := range c.Sync.GitHub {
		if g.AppID == "" {
			need[GitHubTokenEnv] = true
		} else {
			need[GitHubAppKeyEnv] = true
		}
	}
	if len(c.Sync.GitLab) > 0 {
		need[GitLabTokenEnv] = true
	}
	for _, env := range []string{GitHubTokenEnv, GitHubAppKeyEnv, GitLabTokenEnv} {
		if need[env] && !set(env) {
			errs.add(env, "", "not set: the sync targets need it (see docs/sync.md for the scopes)")
		}
	}
	return errs.err()
}
