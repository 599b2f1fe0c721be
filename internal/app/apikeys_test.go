package app_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/app"
	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestAPIKeysFromSecret reads the API keys secret in both its forms (the
// stack's generated key in clear, keyrot's hashed keys document) through
// the SDK from the sandbox, beside the config's keys and API_KEY.
func TestAPIKeysFromSecret(t *testing.T) {
	sb := sandboxtest.Start(t, sandbox.Options{Seed: 3})
	sm := awssm.NewFromConfig(sandboxtest.Config(t, sb))
	store := app.NewStore(sandboxtest.Config(t, sb), "", "")
	ctx := context.Background()
	put := func(name, value string) {
		t.Helper()
		if _, err := sm.CreateSecret(ctx, &awssm.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
			t.Fatal(err)
		}
	}
	const generated = "Zx8kQ2mN5pR7tV9wB3cD6fG1hJ4kL0nPq"
	_, ciHash, _ := keyrothttp.GenerateAPIKey()
	put("stack-api-keys", `{"name":"admin","key":"`+generated+`"}`)
	put("unnamed-key", `{"key":"`+generated+`"}`)
	put("hashed-list", `[{"name":"ci","hash":"`+ciHash+`","users":["ci-*"],"list":false}]`)
	put("hashed-doc", `{"keys":[{"name":"ci","hash":"`+ciHash+`","users":["ci-*"]}]}`)
	put("short-key", `{"name":"admin","key":"abc123"}`)
	put("key-in-hash", `[{"name":"ci","hash":"`+generated+`","users":["*"]}]`)
	put("not-json", `api-key `+generated)

	tests := []struct {
		secret  string
		want    []keyrothttp.APIKey
		wantErr string
	}{
		{"stack-api-keys", []keyrothttp.APIKey{keyrothttp.FullAccessKey("admin", generated)}, ""},
		{"unnamed-key", []keyrothttp.APIKey{keyrothttp.FullAccessKey("default", generated)}, ""},
		{"hashed-list", []keyrothttp.APIKey{{Name: "ci", Hash: ciHash, Users: []string{"ci-*"}}}, ""},
		{"hashed-doc", []keyrothttp.APIKey{{Name: "ci", Hash: ciHash, Users: []string{"ci-*"}}}, ""},
		{"short-key", nil, "at least 32"},
		{"key-in-hash", nil, "not the key itself"},
		{"not-json", nil, "decode"},
		{"missing", nil, "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.secret, func(t *testing.T) {
			cfg := config.Default()
			cfg.API.KeysSecret = tt.secret
			keys, err := app.APIKeys(ctx, cfg, store)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), generated) {
					t.Fatalf("the error quotes the secret: %v", err)
				}
				var ce *config.Error
				if tt.secret != "missing" && !errors.As(err, &ce) {
					t.Errorf("a bad keys secret is a config error (exit 2), got %T", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tt.want) {
				t.Fatalf("keys = %+v, want %+v", keys, tt.want)
			}
			for i := range keys {
				if got, want := keys[i].Name, tt.want[i].Name; got != want {
					t.Errorf("key %d name = %q, want %q", i, got, want)
				}
				if got, want := keys[i].Hash, tt.want[i].Hash; got != want {
					t.Errorf("key %d hash = %q, want %q", i, got, want)
				}
				if got, want := strings.Join(keys[i].Users, ","), strings.Join(tt.want[i].Users, ","); got != want {
					t.Errorf("key %d users = %q, want %q", i, got, want)
				}
			}
		})
	}

	t.Run("config and API_KEY beside the secret", func(t *testing.T) {
		cfg := config.Default()
		cfg.API.Keys = []config.APIKey{{Name: "ops", Hash: ciHash, Users: []string{"*"}}}
		cfg.API.FullAccessKey = generated + "-env"
		cfg.API.KeysSecret = "stack-api-keys"
		keys, err := app.APIKeys(ctx, cfg, store)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, k := range keys {
			names = append(names, k.Name)
		}
		if got, want := strings.Join(names, ","), "ops,API_KEY,admin"; got != want {
			t.Errorf("keys = %s, want %s", got, want)
		}
	})
}
