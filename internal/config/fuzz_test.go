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
