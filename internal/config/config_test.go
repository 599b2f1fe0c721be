package config_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func open(files map[string]string) func(string) (io.ReadCloser, error) {
	return func(p string) (io.ReadCloser, error) {
		s, ok := files[p]
		if !ok {
			return nil, errors.New("open " + p + ": no such file")
		}
		return io.NopCloser(strings.NewReader(s)), nil
	}
}

func TestDefaultsAreTheSeeds(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader("users: {names: [ci-bot]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Policy()
	if p.RotateEvery != 5*time.Minute || p.DeactivateAfter != 2*time.Minute || p.DeleteAfter != time.Minute {
		t.Fatalf("policy = %+v, want the seed's 5m/2m/1m", p)
	}
	if got, want := cfg.Secrets.Prefix, "iam-key-rotation/"; got != want {
		t.Errorf("prefix = %q, want %q", got, want)
	}
	if got, want := cfg.API.Listen, ":8000"; got != want {
		t.Errorf("listen = %q, want %q", got, want)
	}
	if err := cfg.Validate(config.NeedMail); err == nil {
		t.Error("default notify addresses accepted with via: ses")
	}
	if err := cfg.Validate(config.NeedUsers); err != nil {
		t.Errorf("a command that sends no email needs no addresses: %v", err)
	}
}

func TestLoadFileThenEnv(t *testing.T) {
	file := `
region: eu-west-1
users:
  names: [ci-bot, deploy-bot]
rotation:
  rotate_every: 90d
  deactivate_after: 7d
  delete_after: 7d
notify: {sender: keyrot@example.com, admin: sec@example.com}
`
	cfg, err := config.Load("k.yaml", open(map[string]string{"k.yaml": file}), env(map[string]string{
		"KEYROT_DELETE_AFTER": "1d", "KEYROT_USERS": "a, b ,c", "API_KEY": strongKey,
	}), config.Everything...)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := time.Duration(cfg.Rotation.RotateEvery), 90*24*time.Hour; got != want {
		t.Errorf("rotate_every = %v, want %v", got, want)
	}
	if got, want := time.Duration(cfg.Rotation.DeleteAfter), 24*time.Hour; got != want {
		t.Errorf("env did not override delete_after: %v", got)
	}
	if got, want := strings.Join(cfg.Users.Names, ","), "a,b,c"; got != want {
		t.Errorf("users = %q, want %q", got, want)
	}
	if cfg.API.FullAccessKey != strongKey {
		t.Error("API_KEY not read")
	}
	if got := cfg.Redacted().API.FullAccessKey; got == strongKey {
		t.Error("Redacted keeps the API key")
	}
}

func TestValidationNamesTheField(t *testing.T) {
	base := "users: {names: [ci-bot]}\nnotify: {via: log}\n"
	tests := []struct {
		name, yaml string
		env        map[string]string
		field      string
	}{
		{"timings block rotation", base + "rotation: {rotate_every: 5m, deactivate_after: 4m, delete_after: 1m}\n", nil, "rotation.deactivate_after"},
		{"bad duration", base + "rotation: {rotate_every: five}\n", nil, "rotation.rotate_every"},
		{"unknown key", base + "rotaton: {}\n", nil, "rotaton"},
		{"bad unmanaged", base + "rotation: {unmanaged_keys: delete}\n", nil, "rotation.unmanaged_keys"},
		{"bad user name", "users: {names: [\"a b\"]}\nnotify: {via: log}\n", nil, "users.names[0]"},
		{"no users", "notify: {via: log}\n", nil, "users"},
		{"bad path", "users: {names: [x], path_prefix: ci}\nnotify: {via: log}\n", nil, "users.path_prefix"},
		{"bad via", "users: {names: [x]}\nnotify: {via: pigeon}\n", nil, "notify.via"},
		{"ses needs sender", "users: {names: [x]}\nnotify: {via: ses, admin: a@example.com}\n", nil, "notify.sender"},
		{"smtp needs addr", "users: {names: [x]}\nnotify: {via: smtp, sender: s@example.com, admin: a@example.com}\n", nil, "notify.smtp.addr"},
		{"tls pair", base + "api: {tls_cert: c.pem}\n", nil, "api.tls_cert"},
		{"api key without hash", base + "api: {keys: [{name: ci, hash: plain}]}\n", nil, "api.keys[0]"},
		{"bad env duration", base, map[string]string{"KEYROT_ROTATE_EVERY": "soon"}, "KEYROT_ROTATE_EVERY"},
		{"bad env int", base, map[string]string{"KEYROT_CONCURRENCY": "many"}, "KEYROT_CONCURRENCY"},
		{"concurrency range", base + "rotation: {concurrency: 0}\n", nil, "rotation.concurrency"},
		{"log format", base + "log: {format: xml}\n", nil, "log.format"},
		{"zero refresh", base + "api: {refresh: 0s}\n", nil, "api.refresh"},
		{"negative refresh", base + "api: {refresh: -5s}\n", nil, "api.refresh"}, // refused by the duration parser
		{"negative key lifetime", base + "api: {key_lifetime: -1d}\n", nil, "api.key_lifetime"},
		{"expires before created", base + "api: {keys: [{name: ci, users: ['*'], hash: \"sha256:" + strings.Repeat("0", 64) + "\", created: 2026-02-01T00:00:00Z, expires: 2026-01-01T00:00:00Z}]}\n", nil, "api.keys[0]"},
		{"short API_KEY", base, map[string]string{"API_KEY": "a"}, "API_KEY"},
		{"pass phrase API_KEY", base, map[string]string{"API_KEY": "your-secure-api-key"}, "API_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load("k.yaml", open(map[string]string{"k.yaml": tt.yaml}), env(tt.env), config.NeedUsers, config.NeedMail)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.field == "" {
				return
			}
			if got := fields(t, err); !slices.Contains(got, tt.field) {
				t.Fatalf("fields = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
}

// fields are the fields err's problems name; err must be config errors only.
func fields(t *testing.T, err error) []string {
	t.Helper()
	var list config.Errors
	if !errors.As(err, &list) {
		t.Fatalf("error %v is not config.Errors", err)
	}
	var out []string
	for _, e := range list {
		if e.Field == "" || e.Reason == "" {
			t.Errorf("problem without a field or a reason: %#v", e)
		}
		out = append(out, e.Field)
	}
	return out
}

func TestAPIPoll(t *testing.T) {
	base := "users: {names: [ci-bot]}\nnotify: {via: log}\n"
	for _, tt := range []struct {
		name, yaml string
		every      time.Duration
		warned     bool
	}{
		{"default refresh within 2m/4", base, 30 * time.Second, false},
		{"short refresh kept", base + "api: {refresh: 200ms}\n", 200 * time.Millisecond, false},
		{"long refresh clamped", base + "rotation: {rotate_every: 30s, deactivate_after: 6s, delete_after: 3s}\n", 1500 * time.Millisecond, true},
		{"production timings", base + "rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\napi: {refresh: 1m}\n", time.Minute, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Load("k.yaml", open(map[string]string{"k.yaml": tt.yaml}), env(nil), config.NeedUsers)
			if err != nil {
				t.Fatal(err)
			}
			every, clamped := cfg.APIPoll()
			if every != tt.every || clamped != tt.warned {
				t.Errorf("APIPoll = %s, %v; want %s, %v", every, clamped, tt.every, tt.warned)
			}
			w := cfg.Warnings()
			if got := len(w) == 1 && strings.Contains(w[0], "api.refresh"); got != tt.warned {
				t.Errorf("Warnings = %q, want an api.refresh warning: %v", w, tt.warned)
			}
		})
	}
}

// strongKey is shaped like a key from keyrot apikey new.
const strongKey = "krt_q8Vd0mX3nB7rT2kLp9sW4yZc1aF6hJ5uE0oI3gN8xQ2"

// TestAPIKeyStrength: API_KEY must carry at least 128 bits, and the refusal
// says how to make one without echoing the key.
func TestAPIKeyStrength(t *testing.T) {
	for _, tt := range []struct {
		key  string
		pass bool
	}{
		{"a", false},
		{"your-secure-api-key", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // long, not random
		{"0123456789abcdef0123456789abcd", false},                   // 30 hex digits: 120 bits
		{"3f9c2b7e1a4d8f6c0b5e9a2d7c1f4e8b", true},                  // openssl rand -hex 16
		{"Qm9yZWQgc3RyaW5nIGhlcmU=", true},                          // openssl rand -base64 16
		{strongKey, true},
	} {
		base := map[string]string{"KEYROT_USERS": "x", "KEYROT_NOTIFY_VIA": "log", "API_KEY": tt.key}
		_, _, err := config.FromEnv(env(base))
		if tt.pass {
			if err != nil {
				t.Errorf("%q (%d bits) refused: %v", tt.key, config.KeyStrength(tt.key), err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q (%d bits) accepted", tt.key, config.KeyStrength(tt.key))
			continue
		}
		if msg := err.Error(); (len(tt.key) > 8 && strings.Contains(msg, tt.key)) || !strings.Contains(msg, "keyrot apikey new") || !strings.Contains(msg, "128") {
			t.Errorf("refusal of %q: %v", tt.key, err)
		}
	}
}

func TestSecretEnvNeverEchoed(t *testing.T) {
	_, _, err := config.FromEnv(env(map[string]string{"KEYROT_USERS": "x", "KEYROT_NOTIFY_VIA": "log", "KEYROT_CONCURRENCY": "x", "API_KEY": "topsecret"}))
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("err = %v", err)
	}
}

func TestEnvNamesDocumented(t *testing.T) {
	for _, want := range []string{"KEYROT_USERS", "KEYROT_ROTATE_EVERY", "KEYROT_NOTIFY_SENDER", "API_KEY", "LOG_LEVEL"} {
		found := false
		for _, n := range config.EnvNames() {
			found = found || n == want
		}
		if !found {
			t.Errorf("%s missing", want)
		}
	}
}
