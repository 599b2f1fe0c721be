package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
)

func TestAccountsDefaultIsOwnAccount(t *testing.T) {
	cfg := config.Default()
	if cfg.Accounts.Enabled() {
		t.Fatal("accounts enabled by default")
	}
	if got, want := cfg.Accounts.Role, "keyrot-member"; got != want {
		t.Errorf("role = %q, want %q", got, want)
	}
}

func TestAccountsParseAndEnv(t *testing.T) {
	file := "users: {names: [ci-bot]}\nnotify: {via: log}\naccounts:\n  organization: true\n  ous: [ou-ab12-cdefgh34]\n  exclude: ['100000000003']\n  external_id: keyrot-ext\n"
	cfg, err := config.Load("k.yaml", open(map[string]string{"k.yaml": file}), env(map[string]string{"KEYROT_ACCOUNTS_ROLE": "rotator", "KEYROT_ACCOUNTS_CONCURRENCY": "2"}))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Accounts
	if !a.Enabled() || !a.Organization || a.Role != "rotator" || a.Concurrency != 2 || a.ExternalID != "keyrot-ext" ||
		len(a.OUs) != 1 || len(a.Exclude) != 1 || a.Exclude[0] != "100000000003" {
		t.Fatalf("accounts = %+v", a)
	}
	cfg, _, err = config.FromEnv(env(map[string]string{"KEYROT_USERS": "ci-bot", "KEYROT_NOTIFY_VIA": "log", "KEYROT_ACCOUNTS_IDS": "100000000001, 100000000002"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Accounts.IDs, ","); got != "100000000001,100000000002" {
		t.Errorf("ids = %q", got)
	}
}

func TestAccountsValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(*config.Accounts)
		field string
	}{
		{"short id", func(a *config.Accounts) { a.IDs = []string{"12345"} }, "accounts.ids[0]"},
		{"id with letters", func(a *config.Accounts) { a.IDs = []string{"100000000001", "10000000000x"} }, "accounts.ids[1]"},
		{"id twice", func(a *config.Accounts) { a.IDs = []string{"100000000001", "100000000001"} }, "accounts.ids[1]"},
		{"ids and organization", func(a *config.Accounts) { a.IDs, a.Organization = []string{"100000000001"}, true }, "accounts.ids"},
		{"ous without organization", func(a *config.Accounts) { a.OUs = []string{"ou-ab12-cdefgh34"} }, "accounts.ous"},
		{"exclude without organization", func(a *config.Accounts) { a.IDs, a.Exclude = []string{"100000000001"}, []string{"100000000002"} }, "accounts.exclude"},
		{"bad ou", func(a *config.Accounts) { a.Organization, a.OUs = true, []string{"Sales"} }, "accounts.ous[0]"},
		{"bad exclude", func(a *config.Accounts) { a.Organization, a.Exclude = true, []string{"abc"} }, "accounts.exclude[0]"},
		{"role arn", func(a *config.Accounts) { a.Organization, a.Role = true, "arn:aws:iam::1:role/x" }, "accounts.role"},
		{"bad external id", func(a *config.Accounts) { a.Organization, a.ExternalID = true, "x" }, "accounts.external_id"},
		{"no concurrency", func(a *config.Accounts) { a.Organization, a.Concurrency = true, 0 }, "accounts.concurrency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Users.Names, cfg.Notify.Via = []string{"ci-bot"}, "log"
			tc.set(&cfg.Accounts)
			var cerr *config.Error
			if err := cfg.Validate(); !errors.As(err, &cerr) || cerr.Field != tc.field {
				t.Fatalf("err = %v, want field %s", err, tc.field)
			}
		})
	}
	cfg := config.Default()
	cfg.Users.Names, cfg.Notify.Via = []string{"ci-bot"}, "log"
	cfg.Accounts.Organization, cfg.Accounts.OUs, cfg.Accounts.Exclude = true, []string{"r-ab12", "ou-ab12-cdefgh34"}, []string{"100000000003"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("valid organization config rejected: %v", err)
	}
}

func TestAccountsEnvBadValue(t *testing.T) {
	_, _, err := config.FromEnv(env(map[string]string{"KEYROT_USERS": "x", "KEYROT_NOTIFY_VIA": "log", "KEYROT_ACCOUNTS_ORGANIZATION": "sure"}))
	var cerr *config.Error
	if !errors.As(err, &cerr) || cerr.Field != "KEYROT_ACCOUNTS_ORGANIZATION" {
		t.Fatalf("err = %v", err)
	}
}

func TestAccountsExternalIDNotPrinted(t *testing.T) {
	cfg := config.Default()
	cfg.Accounts.ExternalID = "keyrot-ext-7"
	if got := cfg.Redacted().Accounts.ExternalID; got == "keyrot-ext-7" {
		t.Fatal("Redacted keeps the external id")
	}
}
