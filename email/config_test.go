package email_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*email.Config)
		field string // "" = valid
	}{
		{"valid", func(c *email.Config) {}, ""},
		{"no sender", func(c *email.Config) { c.From = "" }, "notify.sender"},
		{"bad sender", func(c *email.Config) { c.From = "not an address" }, "notify.sender"},
		{"bad admin", func(c *email.Config) { c.Admin = "x@" }, "notify.admin"},
		{"no admin, default recipients", func(c *email.Config) { c.Admin = "" }, "notify.admin"},
		{"no admin, owner only", func(c *email.Config) {
			c.Admin = ""
			c.Recipients = map[keyrot.EventKind][]string{}
			for _, k := range email.Kinds {
				c.Recipients[k] = []string{"owner"}
			}
		}, ""},
		{"no admin, a kind left to the default", func(c *email.Config) {
			c.Admin = ""
			c.Recipients = map[keyrot.EventKind][]string{keyrot.EventKeyCreated: {"owner"}}
		}, "notify.admin"},
		{"admin entry without admin", func(c *email.Config) {
			c.Admin = ""
			c.Recipients = map[keyrot.EventKind][]string{keyrot.EventWarning: {"admin"}}
		}, "notify.admin"},
		{"unknown kind", func(c *email.Config) {
			c.Recipients = map[keyrot.EventKind][]string{"key_rotated": {"admin"}}
		}, "notify.recipients.key_rotated"},
		{"bad literal", func(c *email.Config) {
			c.Recipients = map[keyrot.EventKind][]string{keyrot.EventWarning: {"secops"}}
		}, "notify.recipients.warning[0]"},
		{"api url not http", func(c *email.Config) { c.APIBaseURL = "ftp://x" }, "notify.api_url"},
		{"api url with credentials", func(c *email.Config) { c.APIBaseURL = "https://u:p@x" }, "notify.api_url"},
		{"negative rate", func(c *email.Config) { c.SendRate = -1 }, "notify.send_rate"},
		{"negative digest", func(c *email.Config) { c.Digest = -1 }, "notify.digest"},
		{"missing template dir", func(c *email.Config) { c.TemplateDir = "/nonexistent/keyrot" }, "notify.templates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.edit(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var fields []string
			c.Check(func(field, _ string) { fields = append(fields, field) })
			if len(fields) != 1 || fields[0] != tc.field {
				t.Errorf("Check reported %q, want just %q", fields, tc.field)
			}
			if err == nil || !strings.HasPrefix(err.Error(), "email: "+tc.field+": ") {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestRecipients(t *testing.T) {
	for _, tc := range []struct {
		name       string
		recipients map[keyrot.EventKind][]string
		kind       keyrot.EventKind
		owner      string
		want       string
	}{
		{"default admin and owner", nil, keyrot.EventKeyCreated, "dev@example.com", "platform-admins@example.com,dev@example.com"},
		{"default without owner tag", nil, keyrot.EventKeyDeleted, "", "platform-admins@example.com"},
		{"several owners", nil, keyrot.EventWarning, "a@example.com b@example.com", "platform-admins@example.com,a@example.com,b@example.com"},
		{"owner tag not an address", nil, keyrot.EventWarning, "team ci", "platform-admins@example.com"},
		{"duplicates folded", nil, keyrot.EventWarning, "Platform-Admins@example.com", "platform-admins@example.com"},
		{"per kind: failures to secops", map[keyrot.EventKind][]string{
			keyrot.EventRotationFailed: {"admin", "secops@example.com"},
		}, keyrot.EventRotationFailed, "dev@example.com", "platform-admins@example.com,secops@example.com"},
		{"per kind: a kind not listed keeps the default", map[keyrot.EventKind][]string{
			keyrot.EventRotationFailed: {"admin"},
		}, keyrot.EventKeyDeleted, "dev@example.com", "platform-admins@example.com,dev@example.com"},
		{"per kind: null keeps the default", map[keyrot.EventKind][]string{
			keyrot.EventWarning: nil,
		}, keyrot.EventWarning, "", "platform-admins@example.com"},
		{"per kind: an explicit empty list silences", map[keyrot.EventKind][]string{
			keyrot.EventKeyDeleted: {},
		}, keyrot.EventKeyDeleted, "dev@example.com", ""},
		{"per kind: owner only", map[keyrot.EventKind][]string{
			keyrot.EventKeyCreated: {"owner"},
		}, keyrot.EventKeyCreated, "dev@example.com", "dev@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Recipients = tc.recipients
			r, err := email.NewRenderer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(r.Recipients(keyrot.Event{Kind: tc.kind, User: "u", Owner: tc.owner}), ",")
			if got != tc.want {
				t.Errorf("recipients = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestUnreached(t *testing.T) {
	cfg := testConfig()
	if got := cfg.Unreached(); len(got) != 0 {
		t.Errorf("default recipients: Unreached = %v, want none", got)
	}
	cfg.Recipients = map[keyrot.EventKind][]string{
		keyrot.EventKeyCreated:     {"owner"},
		keyrot.EventKeyDeleted:     {},
		keyrot.EventWarning:        nil,
		keyrot.EventRotationFailed: {},
	}
	got := fmt.Sprint(cfg.Unreached())
	if want := fmt.Sprint([]keyrot.EventKind{keyrot.EventKeyDeleted, keyrot.EventRotationFailed}); got != want {
		t.Errorf("Unreached = %s, want %s", got, want)
	}
}

func TestErrorClassification(t *testing.T) {
	base := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"plain", base, false},
		{"permanent", email.Permanent(base), true},
		{"wrapped permanent", errorsJoin("send", email.Permanent(base)), true},
		{"retryable", email.Retryable(base), false},
		{"retryable over permanent", email.Retryable(email.Permanent(base)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := email.IsPermanent(tc.err); got != tc.want {
				t.Errorf("IsPermanent = %v, want %v", got, tc.want)
			}
			if !errors.Is(tc.err, base) {
				t.Error("classification hides the cause")
			}
		})
	}
	if email.Permanent(nil) != nil || email.Retryable(nil) != nil {
		t.Error("Permanent(nil) and Retryable(nil) must be nil")
	}
}

func errorsJoin(msg string, err error) error { return &wrapped{msg, err} }

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
