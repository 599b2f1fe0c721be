package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fill sets every leaf of v to a value unlike the defaults, by its type: a
// config in which every setting is set.
func fill(t *testing.T, v reflect.Value) {
	switch {
	case v.Type() == durationType:
		v.SetInt(int64(7 * time.Hour))
		return
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i))
			}
		}
	case reflect.String:
		v.SetString("x-1")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(3)
	case reflect.Float64:
		v.SetFloat(2.5)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(t, s.Index(0))
		fill(t, s.Index(1))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(t, k)
		fill(t, e)
		m.SetMapIndex(k, e)
		v.Set(m)
	default:
		t.Fatalf("fill: no sample for %s: teach the test (and Setting.setFromEnv) this type", v.Type())
	}
}

// TestEverySettingFromTheEnvironment: every setting, whatever its type
// (nested sections, lists, maps, lists of objects), is set by its derived
// variable and by each alias, in the form the reference documents.
func TestEverySettingFromTheEnvironment(t *testing.T) {
	var sample Config
	fill(t, reflect.ValueOf(&sample).Elem())
	for _, s := range Settings() {
		want := s.Format(sample)
		for _, name := range s.Env {
			var c Config
			src := Sources{}
			err := c.applyEnv(func(k string) (string, bool) {
				if k == name {
					return want, true
				}
				return "", false
			}, src)
			if err != nil {
				t.Errorf("%s=%s: %v", name, want, err)
				continue
			}
			if got := s.Format(c); got != want {
				t.Errorf("%s=%s set %s to %s", name, want, s.Path, got)
			}
			if got := src.Of(s.Path); got != "env "+name {
				t.Errorf("source of %s = %q, want env %s", s.Path, got, name)
			}
		}
	}
}

func TestEnvNames(t *testing.T) {
	seen := map[string]string{}
	for _, s := range Settings() {
		if len(s.Env) == 0 {
			t.Errorf("%s has no environment variable", s.Path)
		}
		if s.YAML && s.Env[0] != EnvName(s.Path) {
			t.Errorf("%s: first variable %s, want the derived %s", s.Path, s.Env[0], EnvName(s.Path))
		}
		for _, e := range s.Env {
			if other, dup := seen[e]; dup {
				t.Errorf("%s names both %s and %s", e, other, s.Path)
			}
			seen[e] = s.Path
		}
		if s.Secret && (s.YAML || s.typ.Kind() != reflect.String) {
			t.Errorf("secret %s must be a string read from the environment only", s.Path)
		}
	}
	for name, path := range map[string]string{
		"KEYROT_NOTIFY_QUIET_PERIOD": "notify.quiet_period", "KEYROT_ROTATION_ROTATE_EVERY": "rotation.rotate_every",
		"KEYROT_NOTIFY_SMTP_ADDR": "notify.smtp.addr", "KEYROT_ROTATE_EVERY": "rotation.rotate_every", "KEYROT_USERS": "users.names",
		"KEYROT_SMTP_ADDR": "notify.smtp.addr", "API_KEY": "API_KEY", "LOG_LEVEL": "log.level", "KEYROT_API_URL": "notify.api_url",
		"KEYROT_NOTIFY_RECIPIENTS": "notify.recipients", "KEYROT_API_KEYS": "api.keys", "KEYROT_SMTP_PASSWORD": "KEYROT_SMTP_PASSWORD",
	} {
		if seen[name] != path {
			t.Errorf("%s sets %q, want %s", name, seen[name], path)
		}
	}
}

// TestDerivedNameWins: with both a setting's derived variable and an older
// alias set, the derived one is used.
func TestDerivedNameWins(t *testing.T) {
	cfg := Default()
	src := Sources{}
	env := map[string]string{"KEYROT_ROTATE_EVERY": "1d", "KEYROT_ROTATION_ROTATE_EVERY": "2d"}
	if err := cfg.applyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, src); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Rotation.RotateEvery.String(); got != "2d" {
		t.Errorf("rotate_every = %s, want 2d", got)
	}
	if got := src.Of("rotation.rotate_every"); got != "env KEYROT_ROTATION_ROTATE_EVERY" {
		t.Errorf("source = %q", got)
	}
}

func TestRedactedBlanksEverySecret(t *testing.T) {
	var c Config
	fill(t, reflect.ValueOf(&c).Elem())
	r := c.Redacted()
	for _, s := range Settings() {
		if got := s.Format(r); (s.Secret || s.Hidden) && got != redactedValue {
			t.Errorf("%s = %q after Redacted", s.Path, got)
		}
		if !s.Secret && !s.Hidden && s.Format(r) != s.Format(c) {
			t.Errorf("Redacted changed %s", s.Path)
		}
	}
	if strings.Contains(r.API.FullAccessKey+r.Notify.SMTP.Password, "x-1") {
		t.Error("a secret survived")
	}
}

// TestNewSectionsNeedNoCode: a section added as a type (as other issues
// add accounts:, sync:, notify.webhooks) gets its variables, types and
// environment forms from its fields alone, however nested.
func TestNewSectionsNeedNoCode(t *testing.T) {
	type webhook struct {
		URL string `yaml:"url"`
	}
	type sync struct {
		Repos  []string           `yaml:"repos"`
		Hooks  []webhook          `yaml:"hooks"`
		Limits map[string]float64 `yaml:"limits"`
		Nested struct {
			Every Duration `yaml:"every"`
		} `yaml:"nested"`
		Token string `yaml:"-" env:"GITHUB_TOKEN" secret:"true"`
	}
	type root struct {
		Sync sync `yaml:"sync"`
	}
	var got []Setting
	walkType(reflect.TypeOf(root{}), nil, "", "", &got)
	want := map[string]string{
		"sync.repos":        "KEYROT_SYNC_REPOS list of strings comma-separated",
		"sync.hooks":        "KEYROT_SYNC_HOOKS list of objects JSON",
		"sync.limits":       "KEYROT_SYNC_LIMITS map of string to number JSON",
		"sync.nested.every": "KEYROT_SYNC_NESTED_EVERY duration ",
		"GITHUB_TOKEN":      "GITHUB_TOKEN string ",
	}
	for _, s := range got {
		desc := strings.Join(s.Env, ",") + " " + s.Type() + " " + s.EnvForm()
		if want[s.Path] != desc {
			t.Errorf("%s: %q, want %q", s.Path, desc, want[s.Path])
		}
		if s.Section != "sync" {
			t.Errorf("%s: section %q", s.Path, s.Section)
		}
		delete(want, s.Path)
	}
	if len(want) > 0 {
		t.Errorf("missing %v", want)
	}
}

// hooks is a setting with its own rules, as another issue's section would be.
type hooks []string

func (h hooks) validate() error {
	var errs Errors
	for i, u := range h {
		if !strings.HasPrefix(u, "https://") {
			errs.add(fmt.Sprintf("notify.hooks[%d]", i), u, "not an https URL")
		}
	}
	return errs.err()
}

type gate struct{ Open bool }

func (g gate) validate() error {
	if !g.Open {
		return &Error{Field: "sync.gate", Reason: "closed"}
	}
	return nil
}

// TestValidatorsFoundAtAnyDepth: a section's or a setting's validate method
// runs with no line in Validate, and every problem it returns is kept.
func TestValidatorsFoundAtAnyDepth(t *testing.T) {
	type notify struct {
		Hooks hooks `yaml:"hooks"`
	}
	type root struct {
		Notify notify `yaml:"notify"`
		Sync   gate   `yaml:"sync"`
	}
	var errs Errors
	runValidators(reflect.ValueOf(root{Notify: notify{Hooks: hooks{"http://a", "https://b", "ftp://c"}}}), &errs)
	var got []string
	for _, e := range errs {
		got = append(got, e.Field)
	}
	if want := []string{"notify.hooks[0]", "notify.hooks[2]", "sync.gate"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("problems %q, want %q", got, want)
	}
}
