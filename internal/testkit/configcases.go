package testkit

import (
	"maps"
	"strings"
	"testing"
)

// ConfigCase is one configuration run through every entry point that loads
// a config (keyrot validate, run, rotate, serve, status, and the Lambdas'
// environment): a bad one must be rejected by each with exit 2 (a config
// error) naming Field; a good one accepted by each.
type ConfigCase struct {
	Name string
	// File is the YAML config file's content; "" means no --config.
	File string
	// Env is the environment over ConfigBaseEnv.
	Env map[string]string
	// Field is the setting (or variable, or "config file") the rejection
	// names; "" for a good case.
	Field string
}

// NeedsFile reports whether the case needs a file: the Lambdas, configured
// by the environment only, cannot be given it.
func (c ConfigCase) NeedsFile() bool { return c.File != "" }

// LookupEnv is the case's environment (over ConfigBaseEnv) with os's
// behind it for whatever else (AWS_*).
func (c ConfigCase) LookupEnv(fallback func(string) (string, bool)) func(string) (string, bool) {
	env := maps.Clone(ConfigBaseEnv)
	maps.Copy(env, c.Env)
	return func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		if strings.HasPrefix(k, "KEYROT_") || k == "API_KEY" || k == "LOG_LEVEL" || fallback == nil {
			return "", false // only the case sets keyrot's variables
		}
		return fallback(k)
	}
}

// ConfigStrongKey is shaped like a key from keyrot apikey new.
const ConfigStrongKey = "krt_q8Vd0mX3nB7rT2kLp9sW4yZc1aF6hJ5uE0oI3gN8xQ2"

// ConfigBaseEnv makes a config that every entry point accepts: users, email
// to the log, an API key. Each case changes one thing (in the environment
// when the base sets it, which is over the file).
var ConfigBaseEnv = map[string]string{
	"KEYROT_USERS_NAMES": "ci-bot", "KEYROT_NOTIFY_VIA": "log", "API_KEY": ConfigStrongKey, "KEYROT_REGION": "us-east-1",
}

const zeroHash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
const oneHash = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// BadConfigs are inputs every entry point must reject, naming the field.
func BadConfigs() []ConfigCase {
	return []ConfigCase{
		{Name: "bad duration", File: "rotation: {rotate_every: 9x}\n", Field: "rotation.rotate_every"},
		{Name: "bad duration env", Env: map[string]string{"KEYROT_ROTATION_ROTATE_EVERY": "soon"}, Field: "KEYROT_ROTATION_ROTATE_EVERY"},
		{Name: "bad duration old env name", Env: map[string]string{"KEYROT_ROTATE_EVERY": "soon"}, Field: "KEYROT_ROTATE_EVERY"},
		{Name: "blocking timings", File: "rotation: {rotate_every: 5m, deactivate_after: 4m, delete_after: 1m}\n", Field: "rotation.deactivate_after"},
		{Name: "NaN env", Env: map[string]string{"KEYROT_IAM_RATE": "NaN"}, Field: "KEYROT_IAM_RATE"},
		{Name: "Inf env", Env: map[string]string{"KEYROT_NOTIFY_SEND_RATE": "+Inf"}, Field: "KEYROT_NOTIFY_SEND_RATE"},
		{Name: "NaN in the file", File: "rotation: {iam_rate: .nan}\n", Field: "rotation.iam_rate"},
		{Name: "bad integer env", Env: map[string]string{"KEYROT_CONCURRENCY": "many"}, Field: "KEYROT_CONCURRENCY"},
		{Name: "unknown section", File: "rotaton: {rotate_every: 90d}\n", Field: "rotaton"},
		{Name: "unknown key", File: "notify: {quiet_perod: 1d}\n", Field: "notify.quiet_perod"},
		{Name: "unknown key in an API key", File: "api: {keys: [{name: ci, hash: " + zeroHash + ", user: ['*']}]}\n", Field: "api.keys[0].user"},
		{Name: "second document", File: "rotation: {rotate_every: 90d}\n---\nrotation: {rotate_every: 1d}\n", Field: "config file"},
		{Name: "file too big", File: "users: {names: [ci-bot]}\n" + strings.Repeat("# padding to over a mebibyte\n", 40000), Field: "config file"},
		{Name: "YAML syntax", File: "users: [\n", Field: "config file"},
		{Name: "unknown event kind", File: "notify: {recipients: {key_craeted: [owner]}}\n", Field: "notify.recipients.key_craeted"},
		{Name: "unknown event kind env", Env: map[string]string{"KEYROT_NOTIFY_RECIPIENTS": `{"key_craeted":["owner"]}`}, Field: "notify.recipients.key_craeted"},
		{Name: "bad recipient", File: "notify: {recipients: {warning: [secops]}}\n", Field: "notify.recipients.warning[0]"},
		{Name: "recipients not JSON", Env: map[string]string{"KEYROT_NOTIFY_RECIPIENTS": `{key_created`}, Field: "KEYROT_NOTIFY_RECIPIENTS"},
		{Name: "bad api_url", Env: map[string]string{"KEYROT_NOTIFY_API_URL": "ftp://keyrot.example.com"}, Field: "notify.api_url"},
		{Name: "negative send_rate", File: "notify: {send_rate: -1}\n", Field: "notify.send_rate"},
		{Name: "missing templates", Env: map[string]string{"KEYROT_NOTIFY_TEMPLATES": "/nonexistent/keyrot-templates"}, Field: "notify.templates"},
		{Name: "bad via", Env: map[string]string{"KEYROT_NOTIFY_VIA": "sms"}, Field: "notify.via"},
		{Name: "bad SMTP address", Env: map[string]string{"KEYROT_SMTP_ADDR": "mail.example.com"}, Field: "notify.smtp.addr"},
		{Name: "bad listen", File: "api: {listen: \"8000\"}\n", Field: "api.listen"},
		{Name: "bad listen env", Env: map[string]string{"KEYROT_API_LISTEN": "localhost:http-alt"}, Field: "api.listen"},
		{Name: "missing TLS files", Env: map[string]string{"KEYROT_API_TLS_CERT": "/nonexistent/cert.pem", "KEYROT_API_TLS_KEY": "/nonexistent/key.pem"}, Field: "api.tls_cert"},
		{Name: "TLS cert without key", File: "api: {tls_cert: c.pem}\n", Field: "api.tls_cert"},
		{Name: "bad hash", File: "api: {keys: [{name: ci, hash: plain, users: ['*']}]}\n", Field: "api.keys[0]"},
		{Name: "bad hash env", Env: map[string]string{"KEYROT_API_KEYS": `[{"name":"ci","hash":"plain","users":["*"]}]`}, Field: "api.keys[0]"},
		{Name: "bad glob", File: "api: {keys: [{name: ci, hash: " + zeroHash + ", users: ['ci-[']}]}\n", Field: "api.keys[0]"},
		{Name: "duplicate key names", File: "api: {keys: [{name: ci, hash: " + zeroHash + ", users: ['*']}, {name: ci, hash: " + oneHash + ", users: ['*']}]}\n", Field: "api.keys[1].name"},
		{Name: "weak API_KEY", Env: map[string]string{"API_KEY": "your-secure-api-key"}, Field: "API_KEY"},
		{Name: "bad user name", Env: map[string]string{"KEYROT_USERS_NAMES": "a b"}, Field: "users.names[0]"},
		{Name: "bad log format", Env: map[string]string{"KEYROT_LOG_FORMAT": "xml"}, Field: "log.format"},
		{Name: "bad secret prefix", File: "secrets: {prefix: 'a prefix'}\n", Field: "secrets.prefix"},
	}
}

// GoodConfigs are inputs every entry point accepts.
func GoodConfigs() []ConfigCase {
	return []ConfigCase{
		{Name: "environment only"},
		{Name: "production timings", File: "rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\napi: {refresh: 1m}\n"},
		{Name: "every event kind", Env: map[string]string{"KEYROT_NOTIFY_RECIPIENTS": `{"key_created":["owner"],"warning":["admin","sec@example.com"]}`, "KEYROT_NOTIFY_ADMIN": "sec@example.com"}},
		{Name: "named API keys from the environment", Env: map[string]string{"KEYROT_API_KEYS": `[{"name":"ci","hash":"` + zeroHash + `","users":["ci-*"],"expires":"2099-01-01T00:00:00Z"}]`}},
		{Name: "new names and old", File: "notify: {quiet_period: 12h, digest: 1h}\n", Env: map[string]string{"KEYROT_NOTIFY_QUIET_PERIOD": "6h", "KEYROT_DELETE_AFTER": "30s"}},
		{Name: "an anchor and an empty section", File: "rotation: &timings {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}\nlog:\n"},
	}
}

// RunEnvConfigCases runs every shared case that the environment can carry
// through an entry point configured by the environment only (a Lambda):
// build builds it from lookup, and must fail for a bad case with an error
// isConfigError accepts, naming the field, and succeed for a good one.
func RunEnvConfigCases(t *testing.T, build func(lookup func(string) (string, bool)) error, isConfigError func(error) bool) {
	t.Helper()
	for _, c := range BadConfigs() {
		if c.NeedsFile() {
			continue // the function reads no file
		}
		t.Run("bad/"+c.Name, func(t *testing.T) {
			err := build(c.LookupEnv(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			if !isConfigError(err) || !strings.Contains(err.Error(), c.Field) {
				t.Errorf("err = %v, want a config error naming %s", err, c.Field)
			}
		})
	}
	for _, c := range GoodConfigs() {
		if c.NeedsFile() {
			continue
		}
		t.Run("good/"+c.Name, func(t *testing.T) {
			if err := build(c.LookupEnv(nil)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
