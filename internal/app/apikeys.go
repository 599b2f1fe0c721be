package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/config"
)

// SecretValues reads a secret's current string (secretsmanager.Store).
type SecretValues interface {
	Value(ctx context.Context, name string) (string, error)
}

// generatedKeyName names the one key of a generated keys secret that does
// not name it.
const generatedKeyName = "default"

// minGeneratedKeyLen is the shortest key in clear a keys secret may hold:
// 32 characters of a random alphanumeric string are about 190 bits.
const minGeneratedKeyLen = 32

// APIKeys gathers the API keys the REST API accepts: the config's named
// keys, API_KEY's full-access key, and those kept in the Secrets Manager
// secret api.keys_secret (read with sm). That secret holds either keyrot's
// keys document (a JSON list of named keys with their hashes, or
// {"keys": [...]}) or one full-access key in clear, {"name": "...",
// "key": "..."}, as the CloudFormation stack generates it; only its hash is
// kept in memory.
func APIKeys(ctx context.Context, cfg config.Config, secrets SecretValues) ([]keyrothttp.APIKey, error) {
	keys := cfg.HTTPKeys()
	if cfg.API.FullAccessKey != "" {
		keys = append(keys, keyrothttp.FullAccessKey("API_KEY", cfg.API.FullAccessKey))
	}
	if name := cfg.API.KeysSecret; name != "" {
		value, err := secrets.Value(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("api: read API keys: %w", err)
		}
		more, err := ParseKeysSecret(value)
		if err != nil {
			return nil, &config.Error{Field: "api.keys_secret", Value: name, Reason: err.Error()}
		}
		keys = append(keys, more...)
	}
	return keys, nil
}

// ParseKeysSecret reads the value of an API keys secret in either of its
// forms: keyrot's keys document (keyrothttp.ParseKeys), or one full-access
// key in clear, {"name": "...", "key": "..."}, as the CloudFormation stack
// generates it (name "default" when absent; at least 32 characters). Its
// errors never quote the secret.
func ParseKeysSecret(s string) ([]keyrothttp.APIKey, error) {
	var generated struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if trimmed := bytes.TrimSpace([]byte(s)); len(trimmed) > 0 && trimmed[0] == '{' && dec.Decode(&generated) == nil && generated.Key != "" {
		if len(generated.Key) < minGeneratedKeyLen {
			return nil, fmt.Errorf("the key in clear is %d characters long; use at least %d random ones", len(generated.Key), minGeneratedKeyLen)
		}
		name := generated.Name
		if name == "" {
			name = generatedKeyName
		}
		return []keyrothttp.APIKey{keyrothttp.FullAccessKey(name, generated.Key)}, nil
	}
	return keyrothttp.ParseKeys(strings.NewReader(s))
}
