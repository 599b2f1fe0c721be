package config_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
)

// loadCase loads a shared case as keyrot run would.
func loadCase(c testkit.ConfigCase) (config.Config, error) {
	path := ""
	files := map[string]string{}
	if c.File != "" {
		path = "k.yaml"
		files[path] = c.File
	}
	return config.Load(path, open(files), c.LookupEnv(nil), config.Everything...)
}

func TestSharedCases(t *testing.T) {
	for _, c := range testkit.BadConfigs() {
		t.Run("bad/"+c.Name, func(t *testing.T) {
			_, err := loadCase(c)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := fields(t, err); !slices.Contains(got, c.Field) {
				t.Errorf("fields = %q, want %q: %v", got, c.Field, err)
			}
		})
	}
	for _, c := range testkit.GoodConfigs() {
		t.Run("good/"+c.Name, func(t *testing.T) {
			if _, err := loadCase(c); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEveryProblemAtOnce: one load reports every problem, each with its
// field, with the key or value probably meant.
func TestEveryProblemAtOnce(t *testing.T) {
	file := `
users: {names: [ci-bot]}
rotation: {rotate_evry: 90d, deactivate_after: 9x, iam_rate: .inf}
notify:
  via: sms
  recipients: {key_craeted: [owner]}
api: {listen: "8000", keys: [{name: ci, hash: plain, users: ['*']}]}
`
	_, err := config.Load("k.yaml", open(map[string]string{"k.yaml": file}), env(map[string]string{"KEYROT_CONCURRENCY": "0"}), config.Everything...)
	want := map[string]string{
		"rotation.rotate_evry":          "did you mean rotate_every?",
		"rotation.deactivate_after":     "9x",
		"rotation.iam_rate":             "finite",
		"notify.via":                    "did you mean ses?",
		"notify.recipients.key_craeted": "unknown event kind; did you mean key_created?",
		"api.listen":                    "host:port",
		"api.keys[0]":                   "sha256:",
		"rotation.concurrency":          "1 to 256",
	}
	var list config.Errors
	if !errors.As(err, &list) {
		t.Fatalf("err = %v", err)
	}
	for _, e := range list {
		if hint, ok := want[e.Field]; ok && strings.Contains(e.Error(), hint) {
			delete(want, e.Field)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing %v from:\n%v", want, err)
	}
}

func TestDurationErrorNamesTheField(t *testing.T) {
	_, err := config.Parse(strings.NewReader("rotation: {rotate_every: 9x}\n"))
	if err == nil || !strings.Contains(err.Error(), `rotation.rotate_every: "9x": `) {
		t.Fatalf("err = %v", err)
	}
}

func TestFileLimits(t *testing.T) {
	for name, file := range map[string]string{
		"second document":       "users: {names: [a]}\n---\nusers: {names: [b]}\n",
		"broken second":         "users: {names: [a]}\n---\nusers: [\n",
		"too big":               strings.Repeat("#", config.MaxFileSize+1),
		"not a mapping":         "- users\n",
		"section not a mapping": "rotation: 90d\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse(strings.NewReader(file))
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// The size check reads no more than the limit (and a byte): a huge
	// stream fails as fast as a small one.
	r := &countingReader{}
	if _, err := config.Parse(r); err == nil || !strings.Contains(err.Error(), "KiB") {
		t.Fatalf("err = %v", err)
	}
	if r.n > config.MaxFileSize+64<<10 {
		t.Errorf("read %d bytes of an endless file", r.n)
	}
}

// countingReader is an endless file of comment lines.
type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
		if i%64 == 63 {
			p[i] = '\n'
		}
	}
	r.n += len(p)
	return len(p), nil
}

func TestNonFiniteNumbers(t *testing.T) {
	for _, tt := range []struct {
		file string
		env  map[string]string
	}{
		{"rotation: {iam_rate: .nan}\n", nil},
		{"api: {rate_limit: -.inf}\n", nil},
		{"", map[string]string{"KEYROT_IAM_RATE": "NaN"}},
		{"", map[string]string{"KEYROT_API_RATE_LIMIT": "Inf"}},
		{"", map[string]string{"KEYROT_NOTIFY_SEND_RATE": "1e999"}},
	} {
		files, path := map[string]string{"k.yaml": tt.file}, ""
		if tt.file != "" {
			path = "k.yaml"
		}
		if _, err := config.Load(path, open(files), env(tt.env)); err == nil || !strings.Contains(err.Error(), "finite") {
			t.Errorf("%q %v: err = %v", tt.file, tt.env, err)
		}
	}
}

func TestSources(t *testing.T) {
	file := "users: {names: [ci-bot]}\nrotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\n"
	cfg, src, err := config.Read("k.yaml", open(map[string]string{"k.yaml": file}), env(map[string]string{
		"KEYROT_DELETE_AFTER": "1d", "KEYROT_NOTIFY_QUIET_PERIOD": "6h", "API_KEY": strongKey,
	}))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"users.names": "file k.yaml", "rotation.rotate_every": "file k.yaml", "rotation.delete_after": "env KEYROT_DELETE_AFTER",
		"notify.quiet_period": "env KEYROT_NOTIFY_QUIET_PERIOD", "API_KEY": "env API_KEY", "api.listen": "default",
	} {
		if got := src.Of(path); got != want {
			t.Errorf("source of %s = %q, want %q", path, got, want)
		}
	}
	if got := time.Duration(cfg.Notify.QuietPeriod); got != 6*time.Hour {
		t.Errorf("quiet_period = %s", got)
	}
}

func TestJSONFromTheEnvironment(t *testing.T) {
	cfg, _, err := config.FromEnv(env(map[string]string{
		"KEYROT_USERS":             "ci-bot",
		"KEYROT_NOTIFY_VIA":        "log",
		"KEYROT_NOTIFY_RECIPIENTS": `{"key_created":["owner"],"warning":[]}`,
		"KEYROT_API_KEYS":          `[{"name":"ci","hash":"sha256:` + strings.Repeat("ab", 32) + `","users":["ci-*"],"replaced_by":"ci2","expires":"2030-01-01T00:00:00Z"}]`,
	}), config.Everything...)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Notify.Recipients["key_created"]; len(got) != 1 || got[0] != "owner" {
		t.Errorf("recipients = %v", cfg.Notify.Recipients)
	}
	if w := cfg.Notify.Recipients["warning"]; w == nil || len(w) != 0 {
		t.Errorf("an explicit empty list must stay empty (silences the kind), got %#v", w)
	}
	if k := cfg.API.Keys; len(k) != 1 || k[0].ReplacedBy != "ci2" || k[0].Expires.Year() != 2030 {
		t.Errorf("keys = %+v", k)
	}
	_, _, err = config.FromEnv(env(map[string]string{"KEYROT_API_KEYS": `[{"name":"ci","hsh":"x"}]`}))
	if err == nil || !strings.Contains(err.Error(), "KEYROT_API_KEYS") || !strings.Contains(err.Error(), "did you mean hash?") {
		t.Errorf("unknown key in JSON: %v", err)
	}
}

// TestNeeds: a command is asked only for what it uses; wrong values are
// rejected whatever it needs.
func TestNeeds(t *testing.T) {
	bare := config.Default()
	if err := bare.Validate(); err != nil {
		t.Errorf("the defaults with no needs: %v", err)
	}
	for need, field := range map[config.Need]string{config.NeedUsers: "users", config.NeedMail: "notify.sender", config.NeedAPI: "api.keys"} {
		if got := fields(t, bare.Validate(need)); !slices.Contains(got, field) {
			t.Errorf("%s: fields %q, want %s", need, got, field)
		}
	}
	bare.API.Listen = "nowhere"
	if got := fields(t, bare.Validate()); !slices.Contains(got, "api.listen") {
		t.Errorf("a wrong value must fail whatever is needed: %q", got)
	}
}

func TestSecretsNeverFromTheFile(t *testing.T) {
	_, err := config.Parse(strings.NewReader("notify: {smtp: {addr: 'mail.example.com:587', password: hunter2hunter2}}\napi: {full_access_key: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "notify.smtp.password: line 1: read from the environment only (KEYROT_SMTP_PASSWORD)") ||
		!strings.Contains(err.Error(), "api.full_access_key: line 2: read from the environment only (API_KEY)") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("the secret was echoed")
	}
}
