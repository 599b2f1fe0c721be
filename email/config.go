package email

import (
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
)

// Defaults applied to zero Config fields.
const (
	DefaultSendRate     = 1.0 // messages per second: the SES sandbox account's rate
	DefaultRetries      = 5
	DefaultBackoff      = 2 * time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultQueueSize    = 1000
	DefaultQuietPeriod  = 24 * time.Hour
	DefaultSecretPrefix = "iam-key-rotation/"
)

// Recipient entries with a meaning in Config.Recipients; anything else is
// an email address.
const (
	RecipientAdmin = "admin" // Config.Admin
	RecipientOwner = "owner" // Event.Owner, from the IAM user's owner tag
)

// Kinds lists every event kind the notifier knows, in display order.
var Kinds = []keyrot.EventKind{
	keyrot.EventKeyCreated, keyrot.EventKeyDeactivated, keyrot.EventKeyDeleted,
	keyrot.EventRotationFailed, keyrot.EventRotationRecovered, keyrot.EventWarning,
	keyrot.EventSyncFailed, keyrot.EventSyncRecovered,
}

// Config configures rendering and delivery. The zero values of the numeric
// fields select the defaults above.
type Config struct {
	// From is the sender address (notify.sender); with SES it must be a
	// verified identity.
	From string
	// Admin is the administrators' address (notify.admin).
	Admin string
	// Recipients maps an event kind to its recipients: "admin", "owner" or
	// literal addresses (notify.recipients). A kind missing from the map
	// (or mapped to nil, YAML's null) keeps the default, admin and owner; only
	// an explicit empty list silences a kind.
	Recipients map[keyrot.EventKind][]string
	// APIBaseURL is the keyrot REST API's base URL, for the fetch
	// instructions (notify.api_url). Empty leaves the API lines out.
	APIBaseURL string
	// SecretPrefix is the Secrets Manager name prefix (default
	// "iam-key-rotation/") and Region its region, for the direct read.
	SecretPrefix, Region string
	// Ring is how many secrets a user's key rotates through (the policy's
	// RingSize). Above one, the direct read given in emails follows the
	// keyrot:current-secret pointer on <prefix><user> to the current one.
	Ring int
	// Contact is whom to tell about a leaked key or a question
	// (notify.contact); default Admin.
	Contact string
	// TemplateDir holds optional template overrides, files named like the
	// built-ins: event.txt.tmpl, event.html.tmpl, digest.txt.tmpl,
	// digest.html.tmpl (notify.templates).
	TemplateDir string
	// SendRate is the most messages per second sent (notify.send_rate);
	// 0 means 1.
	SendRate float64
	// Retries is how often a failed send is retried: 0 means 5, a negative
	// value none.
	Retries int
	// Backoff is the first retry's delay, doubled for each further retry up
	// to 5 minutes; 0 means 2s.
	Backoff time.Duration
	// QueueSize bounds the events waiting for delivery; 0 means 1000.
	QueueSize int
	// Digest, if positive, folds the events for one recipient within this
	// window into one email (notify.digest).
	Digest time.Duration
	// QuietPeriod is how long an unchanged warning is not re-sent
	// (notify.quiet_period); 0 means 24h.
	QuietPeriod time.Duration
}

// ConfigError is a Config field that fails validation. Field is the config
// file key.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Reason }

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	if c.SendRate == 0 {
		c.SendRate = DefaultSendRate
	}
	switch {
	case c.Retries == 0:
		c.Retries = DefaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.Backoff == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QuietPeriod == 0 {
		c.QuietPeriod = DefaultQuietPeriod
	}
	if c.SecretPrefix == "" {
		c.SecretPrefix = DefaultSecretPrefix
	}
	if c.Contact == "" {
		c.Contact = c.Admin
	}
	c.APIBaseURL = strings.TrimRight(c.APIBaseURL, "/")
	return c
}

// Validate reports the first invalid field, named by its config key.
func (c Config) Validate() error {
	if c.From == "" {
		return &ConfigError{"notify.sender", "required: the address emails are sent from"}
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return &ConfigError{"notify.sender", fmt.Sprintf("%q is not an email address", c.From)}
	}
	if c.Admin != "" {
		if _, err := mail.ParseAddress(c.Admin); err != nil {
			return &ConfigError{"notify.admin", fmt.Sprintf("%q is not an email address", c.Admin)}
		}
	}
	if c.Admin == "" {
		if kinds := c.defaulted(); len(kinds) > 0 {
			return &ConfigError{"notify.admin", fmt.Sprintf("required: %s go to admin and owner (the default for a kind notify.recipients does not list)", strings.Join(kinds, ", "))}
		}
	}
	for kind, entries := range c.Recipients {
		if !slices.Contains(Kinds, kind) {
			return &ConfigError{"notify.recipients", fmt.Sprintf("unknown event kind %q (want one of %s)", kind, kindList())}
		}
		for _, r := range entries {
			switch r {
			case RecipientAdmin:
				if c.Admin == "" {
					return &ConfigError{"notify.admin", fmt.Sprintf("required: notify.recipients sends %s to admin", kind)}
				}
			case RecipientOwner:
			default:
				if _, err := mail.ParseAddress(r); err != nil {
					return &ConfigError{"notify.recipients", fmt.Sprintf("%s: %q is not admin, owner or an email address", kind, r)}
				}
			}
		}
	}
	if c.Contact != "" && strings.ContainsAny(c.Contact, "\r\n") {
		return &ConfigError{"notify.contact", "must be one line"}
	}
	if c.APIBaseURL != "" {
		u, err := url.Parse(c.APIBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return &ConfigError{"notify.api_url", fmt.Sprintf("%q is not an http(s) URL", c.APIBaseURL)}
		}
		if u.User != nil || u.RawQuery != "" {
			return &ConfigError{"notify.api_url", "must not carry credentials or a query"}
		}
	}
	switch {
	case c.SendRate < 0:
		return &ConfigError{"notify.send_rate", "must not be negative"}
	case c.Backoff < 0:
		return &ConfigError{"notify.backoff", "must not be negative"}
	case c.QueueSize < 0:
		return &ConfigError{"notify.queue_size", "must not be negative"}
	case c.Digest < 0:
		return &ConfigError{"notify.digest", "must not be negative"}
	case c.QuietPeriod < 0:
		return &ConfigError{"notify.quiet_period", "must not be negative"}
	}
	if c.TemplateDir != "" {
		if fi, err := os.Stat(c.TemplateDir); err != nil || !fi.IsDir() {
			return &ConfigError{"notify.templates", fmt.Sprintf("%q is not a readable directory", c.TemplateDir)}
		}
		if _, err := NewRenderer(c); err != nil {
			return &ConfigError{"notify.templates", err.Error()}
		}
	}
	return nil
}

// defaulted lists the kinds notify.recipients leaves to the default.
func (c Config) defaulted() []string {
	var out []string
	for _, k := range Kinds {
		if c.Recipients[k] == nil {
			out = append(out, string(k))
		}
	}
	return out
}

// Unreached lists the event kinds no email is sent for: those mapped to an
// explicit empty list in notify.recipients. keyrot validate warns about them.
func (c Config) Unreached() []keyrot.EventKind {
	var out []keyrot.EventKind
	for _, k := range Kinds {
		if to := c.Recipients[k]; to != nil && len(to) == 0 {
			out = append(out, k)
		}
	}
	return out
}

func kindList() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// recipients resolves the addresses for e: "admin" and "owner" entries
// expanded, duplicates (case-insensitive) and empty owners dropped.
func (c Config) recipients(e keyrot.Event) []string {
	entries := c.Recipients[e.Kind]
	if entries == nil {
		entries = []string{RecipientAdmin, RecipientOwner}
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range entries {
		switch r {
		case RecipientAdmin:
			r = c.Admin
		case RecipientOwner:
			// IAM tag values cannot hold commas: several owners are
			// separated by spaces. Values that are not bare addresses
			// are ignored.
			for _, o := range strings.Fields(e.Owner) {
				if a, err := mail.ParseAddress(o); err == nil && a.Address == o {
					out = addRecipient(out, seen, o)
				}
			}
			continue
		}
		out = addRecipient(out, seen, r)
	}
	return out
}

func addRecipient(out []string, seen map[string]bool, r string) []string {
	if r == "" || seen[strings.ToLower(r)] {
		return out
	}
	seen[strings.ToLower(r)] = true
	return append(out, r)
}
