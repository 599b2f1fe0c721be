package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
)

// DefaultKeyOverlap is how long `keyrot apikey rotate` keeps the old key valid.
const DefaultKeyOverlap = 7 * 24 * time.Hour

// runAPIKeyNew is `keyrot apikey new`.
func (m *Main) runAPIKeyNew(ctx context.Context, args []string) error {
	return m.runAPIKey(ctx, "new", args)
}

// runAPIKeyRotate is `keyrot apikey rotate`.
func (m *Main) runAPIKeyRotate(ctx context.Context, args []string) error {
	return m.runAPIKey(ctx, "rotate", args)
}

// runAPIKey makes (new) or replaces (rotate) an API key. The key is printed
// once; where keys are kept in a Secrets Manager secret (--keys-secret, or
// api.keys_secret) the secret is updated with the AWS SDK, and a running
// server picks the change up on its next refresh;
// otherwise the lines for the config file are printed.
func (m *Main) runAPIKey(ctx context.Context, cmd string, args []string) error {
	fs := m.flags("apikey " + cmd)
	path := fs.String("config", "", "config file: api.key_lifetime, api.keys_secret, and api.keys for rotate")
	secretID := fs.String("keys-secret", "", "the Secrets Manager secret holding the API keys (default api.keys_secret)")
	lifetime := fs.String("lifetime", "", "how long the new key lives, 0 for ever (default api.key_lifetime, 90d)")
	var overlap *string
	var users *string
	var list *bool
	if cmd == "rotate" {
		overlap = fs.String("overlap", keyrot.FormatDuration(DefaultKeyOverlap), "how long the old key stays valid")
	} else {
		users = fs.String("users", keyrothttp.AllUsers, "the user names or globs the key may read, comma-separated")
		list = fs.Bool("list", false, "the key may call GET /credentials")
	}
	// Go's flag package stops at the first non-flag: accept NAME before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := m.parseWithArgs(fs, args); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() != 0 || name == "" {
		return &usageError{fmt.Sprintf("want one NAME: keyrot apikey %s NAME [flags]", cmd)}
	}
	cfg, err := m.apikeyConfig(*path)
	if err != nil {
		return err
	}
	life := time.Duration(cfg.API.KeyLifetime)
	if *lifetime != "" {
		if life, err = keyrot.ParseDuration(*lifetime); err != nil || life < 0 {
			return &usageError{fmt.Sprintf("--lifetime %q: want a duration such as 90d, or 0 for no expiry", *lifetime)}
		}
	}
	if life == 0 {
		fmt.Fprintf(m.Stderr, "keyrot apikey %s: warning: the new key never expires (lifetime 0): nobody will be told to rotate it\n", cmd)
	}
	if *secretID == "" {
		*secretID = cfg.API.KeysSecret
	}
	now := m.clock().Now()
	var ks *keysSecret
	if *secretID != "" {
		awsCfg, err := app.LoadAWS(ctx, cfg.Region)
		if err != nil {
			return err
		}
		ks = &keysSecret{store: app.NewStore(awsCfg, cfg.Secrets.Prefix, ""), id: *secretID}
	}
	if cmd == "new" {
		return m.newAPIKey(ctx, ks, name, splitList(*users), *list, now, life)
	}
	over, err := keyrot.ParseDuration(*overlap)
	if err != nil || over < 0 {
		return &usageError{fmt.Sprintf("--overlap %q: want a duration such as 7d", *overlap)}
	}
	return m.rotateAPIKey(ctx, ks, cfg, name, now, life, over)
}

// apikeyConfig is the config at path, or, without one, the defaults with
// the environment over them: apikey needs only the api section, so it does
// not insist on a config that could run the engine.
func (m *Main) apikeyConfig(path string) (config.Config, error) {
	if path != "" {
		return m.loadConfig(path)
	}
	cfg := config.Default()
	return cfg, cfg.ApplyEnv(m.LookupEnv)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (m *Main) newAPIKey(ctx context.Context, ks *keysSecret, name string, users []string, list bool, now time.Time, lifetime time.Duration) error {
	key, entry, err := keyrothttp.NewKey(name, users, list, now, lifetime)
	if err != nil {
		return &usageError{err.Error()}
	}
	if ks == nil {
		fmt.Fprintf(m.Stdout, "API key for %s (shown once; give it to the consumer, keep only the hash):\n  %s\n\nAdd to the config under api.keys:\n", name, key)
		return printKeys(m, entry)
	}
	keys, asList, err := ks.read(ctx, true)
	if err != nil {
		return err
	}
	if err := ks.write(ctx, append(keys, entry), asList); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "API key for %s (shown once; give it to the consumer):\n  %s\n\nAdded to the secret %s; a running keyrot accepts it from its next refresh (api.refresh).\n%s",
		name, key, ks.id, expiryNote(entry))
	return nil
}

func (m *Main) rotateAPIKey(ctx context.Context, ks *keysSecret, cfg config.Config, name string, now time.Time, lifetime, overlap time.Duration) error {
	inSecret := ks != nil
	var keys []keyrothttp.APIKey
	asList := false
	if inSecret {
		var err error
		if keys, asList, err = ks.read(ctx, false); err != nil {
			return err
		}
	}
	if !inSecret || !hasKey(keys, name) {
		if !hasKey(cfg.HTTPKeys(), name) && inSecret {
			return fmt.Errorf("no key named %q in the secret %s nor in the config's api.keys", name, ks.id)
		}
		inSecret, keys = false, cfg.HTTPKeys()
	}
	next, key, err := keyrothttp.RotateKey(keys, name, now, lifetime, overlap)
	if err != nil {
		return err
	}
	i := 0
	for next[i].Name != name {
		i++
	}
	successor, old := next[i], next[i+1]
	fmt.Fprintf(m.Stdout, "New API key for %s (shown once; give it to the consumers):\n  %s\n\n", name, key)
	if inSecret {
		if err := ks.write(ctx, next, asList); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "Written to the secret %s; a running keyrot accepts the new key from its next refresh (api.refresh).\n", ks.id)
	} else {
		fmt.Fprintf(m.Stdout, "Replace the entry for %s under api.keys in the config with these two, then restart keyrot:\n", name)
		if err := printKeys(m, successor, old); err != nil {
			return err
		}
	}
	fmt.Fprintf(m.Stdout, "The old key, now %q, works until %s; move its consumers before then (its audit records name it).\n%s",
		old.Name, old.Expires.UTC().Format(time.RFC3339), expiryNote(successor))
	return nil
}

func hasKey(keys []keyrothttp.APIKey, name string) bool {
	for _, k := range keys {
		if k.Name == name {
			return true
		}
	}
	return false
}

func expiryNote(k keyrothttp.APIKey) string {
	if k.Expires.IsZero() {
		return "The new key never expires.\n"
	}
	return fmt.Sprintf("The new key expires at %s: rotate it before then (keyrot apikey rotate %s).\n", k.Expires.UTC().Format(time.RFC3339), k.Name)
}

// printKeys prints config entries as YAML, indented to sit under api.keys.
func printKeys(m *Main, keys ...keyrothttp.APIKey) error {
	out, err := yaml.Marshal(keys)
	if err != nil {
		return fmt.Errorf("print config lines: %w", err)
	}
	for _, line := range strings.SplitAfter(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Fprint(m.Stdout, "  "+line)
	}
	fmt.Fprintln(m.Stdout)
	return nil
}

// keysSecretStore is the part of the secretsmanager adapter apikey uses.
type keysSecretStore interface {
	Value(ctx context.Context, name string) (string, error)
	PutValue(ctx context.Context, name, value, description string) error
}

// keysSecret is the Secrets Manager secret that holds API keys as JSON
// (api.keys_secret), read and written whole through the secretsmanager
// adapter.
type keysSecret struct {
	store keysSecretStore
	id    string
}

// read returns the keys in the secret, and whether they are a bare list
// (else {"keys": [...]}); a missing secret is an empty one when allowed.
func (s *keysSecret) read(ctx context.Context, missingOK bool) (keys []keyrothttp.APIKey, asList bool, err error) {
	body, err := s.store.Value(ctx, s.id)
	if errors.Is(err, keyrot.ErrSecretNotFound) && missingOK {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read API keys: %w", err)
	}
	if keys, err = keyrothttp.ParseKeys(strings.NewReader(body)); err != nil {
		return nil, false, fmt.Errorf("secret %q: %w", s.id, err)
	}
	return keys, strings.HasPrefix(strings.TrimSpace(body), "["), nil
}

// write stores keys as the secret's new version (creating the secret if
// there is none), in the shape it had.
func (s *keysSecret) write(ctx context.Context, keys []keyrothttp.APIKey, asList bool) error {
	var doc any = struct {
		Keys []keyrothttp.APIKey `json:"keys"`
	}{keys}
	if asList {
		doc = keys
	}
	body, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode API keys: %w", err)
	}
	if err := s.store.PutValue(ctx, s.id, string(body), "keyrot REST API keys (hashes), written by keyrot apikey"); err != nil {
		return fmt.Errorf("write API keys: %w", err)
	}
	return nil
}
