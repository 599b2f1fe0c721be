// Package config is keyrot's configuration: its types, defaults, the YAML
// file, the KEYROT_* environment overrides and validation. The order is
// defaults, then file, then environment, then command-line flags (applied by
// the command). AWS settings (credentials, region, endpoints) come from the
// AWS SDK's standard chain, so AWS_ENDPOINT_URL, AWS_REGION, profiles and
// roles work unchanged; region here only overrides the chain's region.
package config

import (
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/keyrot/keyrot"
)

// Duration is a time.Duration written as "90d", "5m", "1h30m".
type Duration time.Duration

// UnmarshalYAML parses s, m, h and d units.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := keyrot.ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// String writes the duration in its largest whole unit, "90d".
func (d Duration) String() string { return keyrot.FormatDuration(time.Duration(d)) }

// MarshalYAML writes the duration in its largest whole unit.
func (d Duration) MarshalYAML() (any, error) { return keyrot.FormatDuration(time.Duration(d)), nil }

// Config is the whole configuration, declared once: its fields give the
// YAML keys (yaml tags), the environment variables (KEYROT_<SECTION>_<KEY>
// derived from the YAML path, plus the older names in env tags), the
// defaults (Default) and the reference, docs/config.md (from the fields'
// doc comments; `go generate ./internal/config` rewrites it). Fields tagged
// secret are read from the environment only and never printed. Every key
// is optional.
type Config struct {
	// Region overrides the AWS SDK chain's region (AWS_REGION, profiles).
	Region   string   `yaml:"region,omitempty"`
	Users    Users    `yaml:"users"`
	Rotation Rotation `yaml:"rotation"`
	Secrets  Secrets  `yaml:"secrets"`
	Notify   Notify   `yaml:"notify"`
	API      API      `yaml:"api"`
	Log      Log      `yaml:"log"`
	Sync     Sync     `yaml:"sync"`
	// Accounts, when set, works in other AWS accounts through an assumed role (docs/organizations.md).
	Accounts Accounts `yaml:"accounts"`
}

// Users selects the managed IAM users.
type Users struct {
	// Names are the IAM user names to manage.
	Names []string `yaml:"names,omitempty" env:"KEYROT_USERS"`
	// Tag selects every IAM user carrying this tag key.
	Tag string `yaml:"tag,omitempty" env:"KEYROT_USER_TAG"`
	// PathPrefix keeps only users under this IAM path ("/ci/").
	PathPrefix string `yaml:"path_prefix,omitempty" env:"KEYROT_PATH_PREFIX"`
	// ExemptGroup exempts the members of this IAM group.
	ExemptGroup string `yaml:"exempt_group,omitempty" env:"KEYROT_EXEMPT_GROUP"`
	// ExemptTag exempts the users carrying this tag key.
	ExemptTag string `yaml:"exempt_tag,omitempty" env:"KEYROT_EXEMPT_TAG"`
	// OwnerTag is the user tag holding the owners' email addresses.
	OwnerTag string `yaml:"owner_tag" env:"KEYROT_OWNER_TAG"`
}

// Rotation holds the timings and how the engine runs.
type Rotation struct {
	// RotateEvery is the age at which a user's key is replaced.
	RotateEvery Duration `yaml:"rotate_every" env:"KEYROT_ROTATE_EVERY"`
	// DeactivateAfter is how long the previous key stays active after a rotation.
	DeactivateAfter Duration `yaml:"deactivate_after" env:"KEYROT_DEACTIVATE_AFTER"`
	// DeleteAfter is how long a deactivated key is kept before it is deleted.
	DeleteAfter Duration `yaml:"delete_after" env:"KEYROT_DELETE_AFTER"`
	// UnmanagedKeys is what to do with keys keyrot did not make: adopt or report.
	UnmanagedKeys string `yaml:"unmanaged_keys" env:"KEYROT_UNMANAGED_KEYS"`
	// DryRun plans and reports without changing anything (not for the daemon).
	DryRun bool `yaml:"dry_run" env:"KEYROT_DRY_RUN"`
	// VerifyTimeout bounds the wait for a new key to work in IAM.
	VerifyTimeout Duration `yaml:"verify_timeout" env:"KEYROT_VERIFY_TIMEOUT"`
	// OrphanGrace is how long a key without a secret is left before it is adopted or reported.
	OrphanGrace Duration `yaml:"orphan_grace"`
	// StepLateness is how late a due step may start (the Lambda's schedule
	// period); consumers are given it with each key.
	StepLateness Duration `yaml:"step_lateness" env:"KEYROT_STEP_LATENESS"`
	// Concurrency is how many users are worked on at once (1 to 256).
	Concurrency int `yaml:"concurrency" env:"KEYROT_CONCURRENCY"`
	// IAMRate is the IAM calls per second, shared by all users.
	IAMRate float64 `yaml:"iam_rate" env:"KEYROT_IAM_RATE"`
	// Resync is how often the daemon runs a pass over every user.
	Resync Duration `yaml:"resync"`
	// BulkObserve observes passes over every user in bulk (credential
	// report, GetAccountAuthorizationDetails, ListSecrets): for fleets.
	BulkObserve bool `yaml:"bulk_observe" env:"KEYROT_BULK_OBSERVE"`
	// ObserveEvery bounds, with BulkObserve, how long a user goes without
	// a full per-user observation (at least 1h).
	ObserveEvery Duration `yaml:"observe_every" env:"KEYROT_OBSERVE_EVERY"`
}

// Secrets says where keys are kept.
type Secrets struct {
	// Prefix starts the name of every secret keyrot writes.
	Prefix string `yaml:"prefix" env:"KEYROT_SECRET_PREFIX"`
	// KMSKeyID encrypts the secrets (default: the account's aws/secretsmanager key).
	KMSKeyID string `yaml:"kms_key_id" env:"KEYROT_KMS_KEY_ID"`
}

// Notify configures email.
type Notify struct {
	// Sender is the address emails come from (a verified SES identity with via: ses).
	Sender string `yaml:"sender"`
	// Admin is the administrators' address.
	Admin string `yaml:"admin"`
	// Via is how email is sent: ses, smtp or log (written to the log, not sent).
	Via string `yaml:"via"`
	// APIURL is the REST API's base URL given in emails ("" leaves the API lines out).
	APIURL string `yaml:"api_url" env:"KEYROT_API_URL"`
	// Contact is whom emails tell people to ask (default: admin).
	Contact string `yaml:"contact,omitempty"`
	// Recipients maps an event kind to "admin", "owner" or addresses; a kind left out goes to admin and owner.
	Recipients map[string][]string `yaml:"recipients,omitempty"`
	// Digest, if set, folds one recipient's events within this window into one email.
	Digest Duration `yaml:"digest,omitempty"`
	// QuietPeriod is how long an unchanged warning is not sent again.
	QuietPeriod Duration `yaml:"quiet_period"`
	// SendRate is the most emails sent per second.
	SendRate float64 `yaml:"send_rate"`
	// Templates is a directory of template overrides (event.txt.tmpl, ...).
	Templates string `yaml:"templates,omitempty"`
	SMTP      SMTP   `yaml:"smtp,omitempty"`
	// Webhooks are HTTPS endpoints each event is posted to, signed with HMAC-SHA256 (docs/notifications.md).
	Webhooks []Webhook `yaml:"webhooks,omitempty"`
	// Slack posts a short message per event to an incoming webhook.
	Slack Slack `yaml:"slack,omitempty"`
	// EventBridge puts each event on an event bus (source keyrot).
	EventBridge EventBridge `yaml:"eventbridge"`
}

// SMTP configures the SMTP sender; its credentials come from the
// environment only.
type SMTP struct {
	// Addr is the SMTP server's host:port.
	Addr string `yaml:"addr,omitempty" env:"KEYROT_SMTP_ADDR"`
	// TLS is starttls, tls or none (none only to a relay on loopback when authenticating).
	TLS string `yaml:"tls,omitempty"`
	// InsecureSkipVerify skips the server certificate check: for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty"`
	// Username authenticates with AUTH PLAIN (with the password).
	Username string `yaml:"-" env:"KEYROT_SMTP_USERNAME" secret:"true"`
	// Password authenticates with AUTH PLAIN (with the username).
	Password string `yaml:"-" env:"KEYROT_SMTP_PASSWORD" secret:"true"`
}

// API configures the REST API.
type API struct {
	// Listen is the API's host:port (port 0 takes any free one).
	Listen string `yaml:"listen"`
	// TLSCert is a PEM certificate file to serve HTTPS (with tls_key).
	TLSCert string `yaml:"tls_cert,omitempty"`
	// TLSKey is the PEM private key file of tls_cert.
	TLSKey string `yaml:"tls_key,omitempty"`
	// Keys are named API keys, stored as hashes (make one with keyrot apikey new NAME).
	Keys []APIKey `yaml:"keys,omitempty"`
	// KeysSecret is a Secrets Manager secret holding more keys as JSON.
	KeysSecret string `yaml:"keys_secret,omitempty"`
	// RateLimit is the requests per second allowed per API key.
	RateLimit float64 `yaml:"rate_limit"`
	// Burst is how many requests an API key may make at once above the rate.
	Burst int `yaml:"burst"`
	// Refresh is how often the API checks Secrets Manager for a key promoted
	// by another process and rereads keys_secret (at most a quarter of
	// rotation.deactivate_after is used).
	Refresh Duration `yaml:"refresh"`
	// KeyLifetime is how long a key made by keyrot apikey new or rotate lives (0: no expiry).
	KeyLifetime Duration `yaml:"key_lifetime"`
	// KeyWarnBefore is how long before an API key expires the admin is told.
	KeyWarnBefore Duration `yaml:"key_warn_before"`
	// MetricsPublic serves the per-user and per-API-key series of /metrics
	// without an API key.
	MetricsPublic bool `yaml:"metrics_public,omitempty"`
	// FullAccessKey is one API key that reads every user (at least 128 random bits).
	FullAccessKey string `yaml:"-" env:"API_KEY" secret:"true"`
}

// APIKey is a named API key, stored as a hash, with its lifetime.
type APIKey struct {
	// Name identifies the key in audit records, logs and metrics.
	Name string `yaml:"name"`
	// Hash is "sha256:<hex>" of the key.
	Hash string `yaml:"hash"`
	// Users are the user names or globs ("ci-*", "*") the key may read.
	Users []string `yaml:"users,omitempty"`
	// List allows GET /credentials.
	List bool `yaml:"list,omitempty"`
	// Created is when the key was made.
	Created time.Time `yaml:"created,omitempty"`
	// Expires is when the key stops working (none if unset).
	Expires time.Time `yaml:"expires,omitempty"`
	// ReplacedBy names the key's successor while it retires.
	ReplacedBy string `yaml:"replaced_by,omitempty"`
}

// Log configures logging.
type Log struct {
	// Format is json, text, console (a line per key event, for a person) or "" (text on a terminal, else json).
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level" env:"LOG_LEVEL"`
}

// Defaults for the API keys' lifetime.
const (
	DefaultKeyLifetime   = 90 * 24 * time.Hour
	DefaultKeyWarnBefore = 14 * 24 * time.Hour
)

// Default returns the seed's defaults.
func Default() Config {
	p := keyrot.DefaultPolicy()
	return Config{
		Users: Users{OwnerTag: "keyrot:owner"},
		Rotation: Rotation{
			RotateEvery: Duration(p.RotateEvery), DeactivateAfter: Duration(p.DeactivateAfter), DeleteAfter: Duration(p.DeleteAfter),
			UnmanagedKeys: string(p.UnmanagedKeys), VerifyTimeout: Duration(p.VerifyTimeout), OrphanGrace: Duration(p.OrphanGrace),
			StepLateness: Duration(p.StepLateness),
			Concurrency:  8, IAMRate: 10, Resync: Duration(time.Minute), ObserveEvery: Duration(24 * time.Hour),
		},
		Secrets: Secrets{Prefix: "iam-key-rotation/"},
		Notify:  Notify{Via: "ses", APIURL: "http://localhost:8000", QuietPeriod: Duration(24 * time.Hour), SendRate: 1, SMTP: SMTP{TLS: "starttls"}, EventBridge: EventBridge{Bus: DefaultEventBus}},
		API: API{Listen: ":8000", RateLimit: 50, Burst: 100, Refresh: Duration(30 * time.Second),
			KeyLifetime: Duration(DefaultKeyLifetime), KeyWarnBefore: Duration(DefaultKeyWarnBefore)},
		Log:      Log{Level: "info"},
		Sync:     Sync{OnFailure: string(keyrot.SyncHold)},
		Accounts: Accounts{Role: DefaultMemberRole, Concurrency: 4},
	}
}

// Policy is the rotation policy the config describes.
func (c Config) Policy() keyrot.Policy {
	return keyrot.Policy{
		RotateEvery:     time.Duration(c.Rotation.RotateEvery),
		DeactivateAfter: time.Duration(c.Rotation.DeactivateAfter),
		DeleteAfter:     time.Duration(c.Rotation.DeleteAfter),
		UnmanagedKeys:   keyrot.UnmanagedKeys(c.Rotation.UnmanagedKeys),
		VerifyTimeout:   time.Duration(c.Rotation.VerifyTimeout),
		OrphanGrace:     time.Duration(c.Rotation.OrphanGrace),
		StepLateness:    time.Duration(c.Rotation.StepLateness),
		SyncMaxHold:     time.Duration(c.Sync.MaxHold),
		SyncOnFailure:   keyrot.SyncOnFailure(c.Sync.OnFailure),
	}
}

// Selector is the user selection the config describes.
func (c Config) Selector() keyrot.UserSelector {
	return keyrot.UserSelector{Names: c.Users.Names, Tag: c.Users.Tag, PathPrefix: c.Users.PathPrefix,
		ExemptGroup: c.Users.ExemptGroup, ExemptTag: c.Users.ExemptTag}
}

// APIPoll is how often the API checks Secrets Manager for a promoted key:
// api.refresh, but never more than a quarter of rotation.deactivate_after,
// so that a key another process replaced stops being served well before it
// is deactivated (and clamped reports that api.refresh was cut short).
func (c Config) APIPoll() (every time.Duration, clamped bool) {
	every, bound := time.Duration(c.API.Refresh), time.Duration(c.Rotation.DeactivateAfter)/4
	if bound > 0 && every > bound {
		return bound, true
	}
	return every, false
}

// Warnings are settings that are valid but probably not what was meant;
// keyrot validate prints them and the commands log them at start.
func (c Config) Warnings() []string {
	var w []string
	if every, clamped := c.APIPoll(); clamped {
		w = append(w, fmt.Sprintf("api.refresh (%s) is longer than a quarter of rotation.deactivate_after (%s): the API checks for promoted keys every %s instead, so that it stops serving a replaced key long before that key is deactivated",
			keyrot.FormatDuration(time.Duration(c.API.Refresh)), keyrot.FormatDuration(time.Duration(c.Rotation.DeactivateAfter)), every))
	}
	if c.Notify.Via == "log" {
		return w // nothing is emailed: every event is a log line
	}
	for _, kind := range c.Email("").Unreached() {
		w = append(w, fmt.Sprintf("notify.recipients.%s is an empty list: %s events are emailed to nobody (remove the line to send them to admin and the owner)", kind, kind))
	}
	return w
}

// Redacted returns the config with every secret setting replaced by
// "<set>" (or left empty), for printing.
func (c Config) Redacted() Config {
	for _, s := range Settings() {
		if v := s.value(&c); (s.Secret || s.Hidden) && !v.IsZero() {
			v.SetString(redactedValue)
		}
	}
	return c
}

// redactedValue stands for a secret that is set.
const redactedValue = "<set>"

// MinAPIKeyBits is the least strength KeyStrength must find in API_KEY.
const MinAPIKeyBits = 128

// KeyStrength estimates the bits of a key typed or pasted as text: its
// length times log2 of the alphabet its character classes span (lower,
// upper, digits, others; 16 for hex digits), so 32 hex digits, 22 base64
// characters or a keyrot key (krt_ and 43 base64url characters) pass 128 and
// a pass phrase does not. A key of fewer than 8 distinct characters is not
// random: 0.
func KeyStrength(key string) int {
	distinct := map[rune]bool{}
	var lower, upper, digit, other bool
	hex := true
	for _, r := range key {
		distinct[r] = true
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
			hex = hex && r <= 'f'
		case r >= 'A' && r <= 'Z':
			upper = true
			hex = hex && r <= 'F'
		case r >= '0' && r <= '9':
			digit = true
		default:
			other = true
			hex = false
		}
	}
	if len(distinct) < 8 {
		return 0
	}
	if hex && !(lower && upper) {
		return 4 * utf8.RuneCountInString(key)
	}
	alphabet := 0
	for _, c := range []struct {
		used bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 32}} {
		if c.used {
			alphabet += c.size
		}
	}
	return int(float64(utf8.RuneCountInString(key)) * math.Log2(float64(alphabet)))
}
