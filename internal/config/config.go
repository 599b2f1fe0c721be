// Package config is keyrot's configuration: its types, defaults, the YAML
// file, the KEYROT_* environment overrides and validation. The order is
// defaults, then file, then environment, then command-line flags (applied by
// the command). AWS settings (credentials, region, endpoints) come from the
// AWS SDK's standard chain, so AWS_ENDPOINT_URL, AWS_REGION, profiles and
// roles work unchanged; region here only overrides the chain's region.
package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

// MarshalYAML writes the duration in its largest whole unit.
func (d Duration) MarshalYAML() (any, error) { return keyrot.FormatDuration(time.Duration(d)), nil }

// Config is the whole configuration. Every key is optional.
type Config struct {
	Region   string   `yaml:"region,omitempty"`
	Users    Users    `yaml:"users"`
	Rotation Rotation `yaml:"rotation"`
	Secrets  Secrets  `yaml:"secrets"`
	Notify   Notify   `yaml:"notify"`
	API      API      `yaml:"api"`
	Log      Log      `yaml:"log"`
	// Accounts, when set, works in other AWS accounts through an assumed role.
	Accounts Accounts `yaml:"accounts"`
}

// Users selects the managed IAM users.
type Users struct {
	Names       []string `yaml:"names,omitempty"`
	Tag         string   `yaml:"tag,omitempty"`
	PathPrefix  string   `yaml:"path_prefix,omitempty"`
	ExemptGroup string   `yaml:"exempt_group,omitempty"`
	ExemptTag   string   `yaml:"exempt_tag,omitempty"`
	OwnerTag    string   `yaml:"owner_tag"`
}

// Rotation holds the timings and how the engine runs.
type Rotation struct {
	RotateEvery     Duration `yaml:"rotate_every"`
	DeactivateAfter Duration `yaml:"deactivate_after"`
	DeleteAfter     Duration `yaml:"delete_after"`
	UnmanagedKeys   string   `yaml:"unmanaged_keys"`
	DryRun          bool     `yaml:"dry_run"`
	VerifyTimeout   Duration `yaml:"verify_timeout"`
	OrphanGrace     Duration `yaml:"orphan_grace"`
	// StepLateness is how late a due step may start (the Lambda's schedule
	// period); consumers are given it with each key.
	StepLateness Duration `yaml:"step_lateness"`
	Concurrency  int      `yaml:"concurrency"`
	IAMRate      float64  `yaml:"iam_rate"` // IAM calls per second, shared by all users
	Resync       Duration `yaml:"resync"`
	// BulkObserve observes passes over every user in bulk (credential
	// report, GetAccountAuthorizationDetails, ListSecrets): for fleets.
	BulkObserve bool `yaml:"bulk_observe"`
	// ObserveEvery bounds, with BulkObserve, how long a user goes without
	// a full per-user observation.
	ObserveEvery Duration `yaml:"observe_every"`
}

// Secrets says where keys are kept.
type Secrets struct {
	Prefix   string `yaml:"prefix"`
	KMSKeyID string `yaml:"kms_key_id"`
}

// Notify configures email.
type Notify struct {
	Sender      string              `yaml:"sender"`
	Admin       string              `yaml:"admin"`
	Via         string              `yaml:"via"` // ses | smtp | log
	APIURL      string              `yaml:"api_url"`
	Contact     string              `yaml:"contact,omitempty"`
	Recipients  map[string][]string `yaml:"recipients,omitempty"`
	Digest      Duration            `yaml:"digest,omitempty"`
	QuietPeriod Duration            `yaml:"quiet_period"`
	SendRate    float64             `yaml:"send_rate"`
	Templates   string              `yaml:"templates,omitempty"`
	SMTP        SMTP                `yaml:"smtp,omitempty"`
}

// SMTP configures the SMTP sender; its credentials come from the
// environment only (KEYROT_SMTP_USERNAME, KEYROT_SMTP_PASSWORD).
type SMTP struct {
	Addr               string `yaml:"addr,omitempty"`
	TLS                string `yaml:"tls,omitempty"` // starttls | tls | none
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
	Username           string `yaml:"-"`
	Password           string `yaml:"-"`
}

// API configures the REST API.
type API struct {
	Listen     string   `yaml:"listen"`
	TLSCert    string   `yaml:"tls_cert,omitempty"`
	TLSKey     string   `yaml:"tls_key,omitempty"`
	Keys       []APIKey `yaml:"keys,omitempty"`
	KeysSecret string   `yaml:"keys_secret,omitempty"` // a Secrets Manager secret holding more keys as JSON
	RateLimit  float64  `yaml:"rate_limit"`            // requests per second per API key
	Burst      int      `yaml:"burst"`
	// Refresh is how often the API checks Secrets Manager for a key promoted
	// by another process (one ListSecrets of the pointers; values are read
	// only for users whose pointer moved) and rereads api.keys_secret. The
	// check runs at least every quarter of rotation.deactivate_after
	// (APIPoll), so a replaced key is served for at most that long.
	Refresh Duration `yaml:"refresh"`
	// KeyLifetime is how long a key made by `keyrot apikey new` or
	// `rotate` lives (0: no expiry); KeyWarnBefore how long before a key
	// expires the admin is told.
	KeyLifetime   Duration `yaml:"key_lifetime"`
	KeyWarnBefore Duration `yaml:"key_warn_before"`
	// MetricsPublic serves the per-user and per-API-key series of /metrics
	// without an API key.
	MetricsPublic bool `yaml:"metrics_public,omitempty"`
	// FullAccessKey is the seed's API_KEY: one key that reads every user.
	// Environment only, never printed.
	FullAccessKey string `yaml:"-"`
}

// APIKey is a named API key, stored as a hash, with its lifetime.
type APIKey struct {
	Name       string    `yaml:"name"`
	Hash       string    `yaml:"hash"`
	Users      []string  `yaml:"users,omitempty"`
	List       bool      `yaml:"list,omitempty"`
	Created    time.Time `yaml:"created,omitempty"`
	Expires    time.Time `yaml:"expires,omitempty"` // RFC 3339; zero: no expiry
	ReplacedBy string    `yaml:"replaced_by,omitempty"`
}

// Log configures logging.
type Log struct {
	Format string `yaml:"format"` // json | text | console (a line per key event, for a person) | "" (text on a terminal, else json)
	Level  string `yaml:"level"`  // debug | info | warn | error
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
		Notify:  Notify{Via: "ses", APIURL: "http://localhost:8000", QuietPeriod: Duration(24 * time.Hour), SendRate: 1, SMTP: SMTP{TLS: "starttls"}},
		API: API{Listen: ":8000", RateLimit: 50, Burst: 100, Refresh: Duration(30 * time.Second),
			KeyLifetime: Duration(DefaultKeyLifetime), KeyWarnBefore: Duration(DefaultKeyWarnBefore)},
		Log:      Log{Level: "info"},
		Accounts: Accounts{Role: DefaultMemberRole, Concurrency: 4},
	}
}

// Error is a configuration field that is wrong.
type Error struct {
	Field  string // e.g. "rotation.rotate_every" or "KEYROT_ROTATE_EVERY"
	Value  string
	Reason string
}

func (e *Error) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("config: %s: %q: %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("config: %s: %s", e.Field, e.Reason)
}

// Parse reads a YAML config over the defaults. Unknown keys are errors, so a
// typo does not silently fall back to a default.
func Parse(r io.Reader) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// envVar binds an environment variable to a config field.
type envVar struct {
	name string
	set  func(c *Config, v string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func dur(p func(*Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := keyrot.ParseDuration(v)
		if err != nil {
			return err
		}
		*p(c) = Duration(d)
		return nil
	}
}

func list(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*p(c) = out
		return nil
	}
}

// envVars lists every environment override, documented in the README.
var envVars = []envVar{
	{"KEYROT_REGION", str(func(c *Config) *string { return &c.Region })},
	{"KEYROT_USERS", list(func(c *Config) *[]string { return &c.Users.Names })},
	{"KEYROT_USER_TAG", str(func(c *Config) *string { return &c.Users.Tag })},
	{"KEYROT_PATH_PREFIX", str(func(c *Config) *string { return &c.Users.PathPrefix })},
	{"KEYROT_EXEMPT_GROUP", str(func(c *Config) *string { return &c.Users.ExemptGroup })},
	{"KEYROT_EXEMPT_TAG", str(func(c *Config) *string { return &c.Users.ExemptTag })},
	{"KEYROT_OWNER_TAG", str(func(c *Config) *string { return &c.Users.OwnerTag })},
	{"KEYROT_ROTATE_EVERY", dur(func(c *Config) *Duration { return &c.Rotation.RotateEvery })},
	{"KEYROT_DEACTIVATE_AFTER", dur(func(c *Config) *Duration { return &c.Rotation.DeactivateAfter })},
	{"KEYROT_DELETE_AFTER", dur(func(c *Config) *Duration { return &c.Rotation.DeleteAfter })},
	{"KEYROT_UNMANAGED_KEYS", str(func(c *Config) *string { return &c.Rotation.UnmanagedKeys })},
	{"KEYROT_DRY_RUN", func(c *Config, v string) (err error) { c.Rotation.DryRun, err = strconv.ParseBool(v); return err }},
	{"KEYROT_VERIFY_TIMEOUT", dur(func(c *Config) *Duration { return &c.Rotation.VerifyTimeout })},
	{"KEYROT_STEP_LATENESS", dur(func(c *Config) *Duration { return &c.Rotation.StepLateness })},
	{"KEYROT_CONCURRENCY", func(c *Config, v string) (err error) { c.Rotation.Concurrency, err = strconv.Atoi(v); return err }},
	{"KEYROT_IAM_RATE", func(c *Config, v string) (err error) { c.Rotation.IAMRate, err = strconv.ParseFloat(v, 64); return err }},
	{"KEYROT_BULK_OBSERVE", func(c *Config, v string) (err error) { c.Rotation.BulkObserve, err = strconv.ParseBool(v); return err }},
	{"KEYROT_OBSERVE_EVERY", dur(func(c *Config) *Duration { return &c.Rotation.ObserveEvery })},
	{"KEYROT_SECRET_PREFIX", str(func(c *Config) *string { return &c.Secrets.Prefix })},
	{"KEYROT_KMS_KEY_ID", str(func(c *Config) *string { return &c.Secrets.KMSKeyID })},
	{"KEYROT_NOTIFY_SENDER", str(func(c *Config) *string { return &c.Notify.Sender })},
	{"KEYROT_NOTIFY_ADMIN", str(func(c *Config) *string { return &c.Notify.Admin })},
	{"KEYROT_NOTIFY_VIA", str(func(c *Config) *string { return &c.Notify.Via })},
	{"KEYROT_NOTIFY_CONTACT", str(func(c *Config) *string { return &c.Notify.Contact })},
	{"KEYROT_API_URL", str(func(c *Config) *string { return &c.Notify.APIURL })},
	{"KEYROT_SMTP_ADDR", str(func(c *Config) *string { return &c.Notify.SMTP.Addr })},
	{"KEYROT_SMTP_USERNAME", str(func(c *Config) *string { return &c.Notify.SMTP.Username })},
	{"KEYROT_SMTP_PASSWORD", str(func(c *Config) *string { return &c.Notify.SMTP.Password })},
	{"KEYROT_API_LISTEN", str(func(c *Config) *string { return &c.API.Listen })},
	{"KEYROT_API_KEYS_SECRET", str(func(c *Config) *string { return &c.API.KeysSecret })},
	{"API_KEY", str(func(c *Config) *string { return &c.API.FullAccessKey })},
	{"KEYROT_LOG_FORMAT", str(func(c *Config) *string { return &c.Log.Format })},
	{"LOG_LEVEL", str(func(c *Config) *string { return &c.Log.Level })},
}

// EnvNames lists the environment variables that override the config.
func EnvNames() []string {
	all := slices.Concat(envVars, accountsEnv)
	names := make([]string, len(all))
	for i, e := range all {
		names[i] = e.name
	}
	return names
}

// secretEnv are the variables whose values must never be echoed.
var secretEnv = map[string]bool{"API_KEY": true, "KEYROT_SMTP_PASSWORD": true, "KEYROT_SMTP_USERNAME": true}

// ApplyEnv overrides cfg with the KEYROT_* variables that lookup finds.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	for _, e := range slices.Concat(envVars, accountsEnv) {
		v, ok := lookup(e.name)
		if !ok || (v == "" && !secretEnv[e.name]) {
			continue
		}
		if err := e.set(c, v); err != nil {
			shown := v
			if secretEnv[e.name] {
				shown = ""
			}
			return &Error{Field: e.name, Value: shown, Reason: err.Error()}
		}
	}
	return nil
}

// FromEnv is the defaults with the environment applied, validated: the
// Lambda's whole configuration.
func FromEnv(lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if err := cfg.ApplyEnv(lookup); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// Load reads the file at path (if not empty) over the defaults, applies the
// environment and validates.
func Load(path string, open func(string) (io.ReadCloser, error), lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if path != "" {
		f, err := open(path)
		if err != nil {
			return cfg, &Error{Field: "config file", Value: path, Reason: err.Error()}
		}
		defer f.Close()
		if cfg, err = Parse(f); err != nil {
			return cfg, &Error{Field: "config file", Value: path, Reason: err.Error()}
		}
	}
	if err := cfg.ApplyEnv(lookup); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
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
	}
}

// Selector is the user selection the config describes.
func (c Config) Selector() keyrot.UserSelector {
	return keyrot.UserSelector{Names: c.Users.Names, Tag: c.Users.Tag, PathPrefix: c.Users.PathPrefix,
		ExemptGroup: c.Users.ExemptGroup, ExemptTag: c.Users.ExemptTag}
}

var (
	iamUserName  = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	secretPrefix = regexp.MustCompile(`^[\w/+=.@-]{0,256}$`)
)

// Validate names the first field that is wrong and why.
func (c Config) Validate() error {
	var policyErr *keyrot.PolicyError
	if err := c.Policy().Validate(); errors.As(err, &policyErr) {
		return &Error{Field: policyErr.Field, Reason: policyErr.Reason}
	}
	for _, n := range c.Users.Names {
		if !iamUserName.MatchString(n) {
			return &Error{Field: "users.names", Value: n, Reason: "not a valid IAM user name (1-64 of letters, digits and +=,.@_-)"}
		}
	}
	if len(c.Users.Names) == 0 && c.Users.Tag == "" {
		return &Error{Field: "users", Reason: "no users selected: set users.names and/or users.tag (KEYROT_USERS, KEYROT_USER_TAG)"}
	}
	if p := c.Users.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/")) {
		return &Error{Field: "users.path_prefix", Value: p, Reason: "an IAM path starts and ends with /"}
	}
	if !secretPrefix.MatchString(c.Secrets.Prefix) || c.Secrets.Prefix == "" {
		return &Error{Field: "secrets.prefix", Value: c.Secrets.Prefix, Reason: "must be 1-256 of letters, digits and /_+=.@-"}
	}
	if c.Rotation.Concurrency < 1 || c.Rotation.Concurrency > 256 {
		return &Error{Field: "rotation.concurrency", Value: strconv.Itoa(c.Rotation.Concurrency), Reason: "must be 1 to 256"}
	}
	if c.Rotation.IAMRate <= 0 {
		return &Error{Field: "rotation.iam_rate", Reason: "must be positive (IAM calls per second)"}
	}
	if c.Rotation.Resync <= 0 {
		return &Error{Field: "rotation.resync", Reason: "must be positive"}
	}
	if c.Rotation.ObserveEvery < Duration(time.Hour) {
		return &Error{Field: "rotation.observe_every", Value: keyrot.FormatDuration(time.Duration(c.Rotation.ObserveEvery)), Reason: "must be at least 1h (every user is observed in full this often with bulk_observe)"}
	}
	switch c.Notify.Via {
	case "ses", "smtp", "log":
	default:
		return &Error{Field: "notify.via", Value: c.Notify.Via, Reason: "must be ses, smtp or log"}
	}
	if c.Notify.Via != "log" {
		for field, addr := range map[string]string{"notify.sender": c.Notify.Sender, "notify.admin": c.Notify.Admin} {
			if _, err := mail.ParseAddress(addr); err != nil {
				return &Error{Field: field, Value: addr, Reason: "must be an email address (or set notify.via: log)"}
			}
		}
	}
	if c.Notify.Via == "smtp" && c.Notify.SMTP.Addr == "" {
		return &Error{Field: "notify.smtp.addr", Reason: "required with notify.via: smtp"}
	}
	switch c.Notify.SMTP.TLS {
	case "starttls", "tls", "none":
	default:
		return &Error{Field: "notify.smtp.tls", Value: c.Notify.SMTP.TLS, Reason: "must be starttls, tls or none"}
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		return &Error{Field: "api.tls_cert", Reason: "set both api.tls_cert and api.tls_key, or neither"}
	}
	if c.API.Refresh <= 0 {
		return &Error{Field: "api.refresh", Value: time.Duration(c.API.Refresh).String(), Reason: "must be positive: how often the API checks Secrets Manager for a promoted key (default 30s)"}
	}
	for i, k := range c.API.Keys {
		if k.Name == "" || !strings.HasPrefix(k.Hash, "sha256:") {
			return &Error{Field: fmt.Sprintf("api.keys[%d]", i), Value: k.Name, Reason: "needs a name and a hash \"sha256:<hex>\" (make one with: keyrot apikey new NAME)"}
		}
		if !k.Created.IsZero() && !k.Expires.IsZero() && k.Expires.Before(k.Created) {
			return &Error{Field: fmt.Sprintf("api.keys[%d].expires", i), Value: k.Name, Reason: "is before created"}
		}
	}
	if c.API.Refresh <= 0 {
		// 0 would spin the refresh loops.
		return &Error{Field: "api.refresh", Reason: "must be positive"}
	}
	if c.API.KeyLifetime < 0 {
		return &Error{Field: "api.key_lifetime", Reason: "must be 0 (no expiry) or positive"}
	}
	if c.API.KeyWarnBefore < 0 {
		return &Error{Field: "api.key_warn_before", Reason: "must be 0 (no warning) or positive"}
	}
	if k := c.API.FullAccessKey; k != "" {
		if bits := KeyStrength(k); bits < MinAPIKeyBits {
			// The key itself is never echoed.
			return &Error{Field: "API_KEY", Reason: fmt.Sprintf("too weak to be an API key (about %d bits; at least %d needed): make a random one with `keyrot apikey new NAME` (256 bits) or `openssl rand -hex 32`", bits, MinAPIKeyBits)}
		}
	}
	if err := c.Accounts.validate(); err != nil {
		return err
	}
	switch c.Log.Format {
	case "", "json", "text", "console":
	default:
		return &Error{Field: "log.format", Value: c.Log.Format, Reason: "must be json, text or console"}
	}
	switch strings.ToLower(c.Log.Level) {
	case "", "debug", "info", "warn", "error":
	default:
		return &Error{Field: "log.level", Value: c.Log.Level, Reason: "must be debug, info, warn or error"}
	}
	return nil
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
	return w
}

// Redacted returns the config with every secret blanked, for printing.
func (c Config) Redacted() Config {
	if c.API.FullAccessKey != "" {
		c.API.FullAccessKey = "<set>"
	}
	c.Notify.SMTP.Username, c.Notify.SMTP.Password = "", ""
	if c.Accounts.ExternalID != "" {
		c.Accounts.ExternalID = "<set>" // the stacks keep it NoEcho
	}
	return c
}

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
