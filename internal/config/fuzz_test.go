package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
)

// FuzzParse: any file either parses or fails with an error; a parsed one
// validates or names the field that is wrong. Never a panic.
func FuzzParse(f *testing.F) {
	f.Add("users: {names: [ci-bot]}\nnotify: {via: log}\n")
	f.Add("rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\n")
	f.Add("users: [\n")
	f.Add("api: {keys: [{name: ci, hash: 'sha256:00'}]}\n")
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := config.Parse(strings.NewReader(s))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Field == "" {
				t.Fatalf("Validate error %v names no field", err)
			}
		}
	})
}

// FuzzEnv: any value of any variable either sets its setting or fails with
// a config error naming the variable; a secret's value is never echoed.
func FuzzEnv(f *testing.F) {
	f.Add(0, "90d")
	f.Add(1, `{"key_created":["owner"]}`)
	f.Add(2, `[{"name":"ci","hash":"sha256:00","users":["*"]}]`)
	f.Add(3, "NaN")
	f.Add(4, "a,b,,c")
	names := config.EnvNames()
	f.Fuzz(func(t *testing.T, i int, v string) {
		if i < 0 {
			i = -i
		}
		name := names[i%len(names)]
		_, _, err := config.FromEnv(func(k string) (string, bool) { return v, k == name })
		if err == nil {
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Field == "" {
			t.Fatalf("%s=%q: error %v names no field", name, v, err)
		}
		if (name == "API_KEY" || strings.Contains(name, "SMTP_PASSWORD")) && len(v) > 8 && strings.Contains(err.Error(), v) {
			t.Fatalf("%s echoed: %v", name, err)
		}
	})
}
