package email_test

import (
	"bytes"
	"flag"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/mock"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./email -run Golden -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test ./email -run Golden -update to accept):\n--- got ---\n%s", path, got)
	}
}

func header(m email.Message) string {
	var b strings.Builder
	b.WriteString("From: " + m.From + "\n")
	b.WriteString("To: " + strings.Join(m.To, ", ") + "\n")
	b.WriteString("Subject: " + m.Subject + "\n")
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		b.WriteString(k + ": " + m.Headers[k] + "\n")
	}
	return b.String() + "\n"
}

func TestRenderGolden(t *testing.T) {
	events := sampleEvents()
	for _, name := range slices.Sorted(maps.Keys(events)) {
		t.Run(name, func(t *testing.T) {
			m, err := email.Render(testConfig(), events[name])
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".txt", header(m)+m.Text)
			golden(t, name+".html", m.HTML)
		})
	}
	t.Run("digest", func(t *testing.T) {
		var list []keyrot.Event
		for _, name := range slices.Sorted(maps.Keys(events)) {
			list = append(list, events[name])
		}
		other := events["key_created"]
		other.User, other.Owner, other.Time = "deploy-bot", "", t0.Add(time.Minute)
		list = append(list, other)
		m, err := email.RenderDigest(testConfig(), "platform-admins@example.com", list)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "digest.txt", header(m)+m.Text)
		golden(t, "digest.html", m.HTML)
	})
}

func TestRenderSubjects(t *testing.T) {
	events := sampleEvents()
	for name, want := range map[string]string{
		"key_created":              "[keyrot] key created: ci-bot AKIAIOSFODNN7EXAMPLE",
		"key_deactivated":          "[keyrot] key deactivated: ci-bot AKIAI44QH8DHBEXAMPLE",
		"key_deleted":              "[keyrot] key deleted: ci-bot AKIAI44QH8DHBEXAMPLE",
		"rotation_failed":          "[keyrot] FAILED rotation: ci-bot",
		"rotation_recovered":       "[keyrot] RECOVERED rotation: ci-bot",
		"warning_key_in_use":       "[keyrot] WARNING key in use: ci-bot AKIAI44QH8DHBEXAMPLE",
		"warning_unmanaged_key":    "[keyrot] WARNING unmanaged key: ci-bot AKIAJ5EXAMPLEUNMANAGED",
		"warning_key_limit":        "[keyrot] WARNING key limit: ci-bot AKIAIOSFODNN7EXAMPLE",
		"warning_api_key_expiring": "[keyrot] WARNING API key expiring: ci",
		"sync_failed":              "[keyrot] FAILED sync: ci-bot AKIAI44QH8DHBEXAMPLE",
		"sync_recovered":           "[keyrot] RECOVERED sync: ci-bot AKIAI44QH8DHBEXAMPLE",
		"member_key_created":       "[keyrot] key created: ci-bot AKIAIOSFODNN7EXAMPLE (account 100000000001)",
		"account_failed":           "[keyrot] FAILED rotation: account 100000000002",
	} {
		t.Run(name, func(t *testing.T) {
			m, err := email.Render(testConfig(), events[name])
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Subject; got != want {
				t.Errorf("subject = %q, want %q", got, want)
			}
			if got, want := m.Headers[email.HeaderEvent], string(events[name].Kind); got != want {
				t.Errorf("%s = %q, want %q", email.HeaderEvent, got, want)
			}
		})
	}
}

// requiredSections are what every event email must say, in both parts.
func requiredSections(e keyrot.Event) []string {
	if e.APIKey != "" {
		// About a REST API key: no user, no key to fetch; how to rotate it.
		return []string{"Event details", "API key", e.APIKey, e.Time.UTC().Format(time.RFC3339), "What happens next",
			e.NextAt.UTC().Format(time.RFC3339), "keyrot apikey rotate " + e.APIKey, "--overlap", "Security best practices", "security@example.com"}
	}
	if e.User == "" {
		// About a whole account: which, what failed, what to check.
		return []string{"Event details", "Account", e.Account, e.Err, "role exists in the account", "Security best practices"}
	}
	path := e.User
	if e.Account != "" {
		path = e.Account + "/" + e.User
	}
	s := []string{
		"Event details",
		e.User,
		e.Time.UTC().Format(time.RFC3339),
		"What happens next",
		"How to get the current key",
		"X-API-Key: $KEYROT_API_KEY",
		"https://keyrot.example.com/credentials/" + path,
		"credential_process = keyrot credentials " + path + " --api https://keyrot.example.com --format credential_process",
		"~/.aws/config",
		"keyrot credentials " + e.User + " --direct",
		"aws secretsmanager get-secret-value --secret-id iam-key-rotation/" + e.User + " --region eu-west-1",
		"Security best practices",
		"Never commit an access key",
		"OIDC federation",
		"security@example.com",
	}
	if e.KeyID != "" {
		s = append(s, e.KeyID)
	}
	if !e.NextAt.IsZero() {
		s = append(s, e.NextAt.UTC().Format(time.RFC3339))
	}
	return s
}

func TestRenderSections(t *testing.T) {
	for name, e := range sampleEvents() {
		t.Run(name, func(t *testing.T) {
			m, err := email.Render(testConfig(), e)
			if err != nil {
				t.Fatal(err)
			}
			html := strings.ReplaceAll(m.HTML, "&#34;", `"`)
			for _, want := range requiredSections(e) {
				if !strings.Contains(m.Text, want) {
					t.Errorf("text lacks %q", want)
				}
				if !strings.Contains(html, want) {
					t.Errorf("html lacks %q", want)
				}
			}
			want := "platform-admins@example.com,team-ci@example.com"
			if e.Owner == "" {
				want = "platform-admins@example.com"
			}
			if got := strings.Join(m.To, ","); got != want {
				t.Errorf("To = %q, want %q", got, want)
			}
		})
	}
}

func TestRenderWithoutAPI(t *testing.T) {
	cfg := testConfig()
	cfg.APIBaseURL = ""
	m, err := email.Render(cfg, sampleEvents()["key_created"])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Text, "curl") || strings.Contains(m.HTML, "curl") {
		t.Error("curl line rendered without an API URL")
	}
	if !strings.Contains(m.Text, "keyrot credentials ci-bot --direct") {
		t.Error("direct read missing")
	}
}

func TestRenderEscapesHTML(t *testing.T) {
	e := sampleEvents()["rotation_failed"]
	e.Err = `<script>alert("x")</script>`
	m, err := email.Render(testConfig(), e)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<script>") {
		t.Error("HTML part carries an unescaped <script>")
	}
	if !strings.Contains(m.Text, e.Err) {
		t.Error("text part lost the error")
	}
}

// TestNoSecretInMessagesOrLogs feeds a real-looking secret access key into
// every free-text field an upstream bug could put it in, and checks that no
// message part, header or log line carries it.
func TestNoSecretInMessagesOrLogs(t *testing.T) {
	secret := fakeSecret(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := mock.NewClock(t0)
	sender := newRecordingSender(clock)
	cfg := testConfig()
	cfg.SendRate = 1000
	n, err := email.NewNotifier(cfg, sender, email.WithClock(clock), email.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	events := sampleEvents()
	var all []keyrot.Event
	for _, name := range slices.Sorted(maps.Keys(events)) {
		e := events[name]
		e.Summary += " leaked: " + secret
		e.Next = "secret=" + secret + "."
		e.Err = "aws said " + secret + "," + secret
		all = append(all, e)
	}
	check := func(what, s string) {
		t.Helper()
		if strings.Contains(s, secret) {
			t.Errorf("%s carries the secret access key", what)
		}
		if strings.Contains(s, secret[10:30]) {
			t.Errorf("%s carries part of the secret access key", what)
		}
	}
	for _, e := range all {
		m, err := email.Render(cfg, e)
		if err != nil {
			t.Fatal(err)
		}
		check("subject", m.Subject)
		check("text", m.Text)
		check("html", m.HTML)
		for k, v := range m.Headers {
			check("header "+k, v)
		}
		if !strings.Contains(m.Text, "[redacted]") {
			t.Errorf("%s: expected the secret to be replaced by [redacted]", e.Kind)
		}
	}
	d, err := email.RenderDigest(cfg, "a@example.com", all)
	if err != nil {
		t.Fatal(err)
	}
	check("digest text", d.Text)
	check("digest html", d.HTML)

	// Through the notifier, with a failing and a working send, and the log sender.
	sender.errs = []error{email.Permanent(errString("rejected"))}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if err := n.Notify(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	for range all {
		// The send rate spaces the messages 1 ms apart on the driven clock:
		// move it on until the next one goes out.
		for sent := false; !sent; {
			select {
			case m := <-sender.sent:
				check("sent message", m.msg.Text+m.msg.HTML+m.msg.Subject)
				sent = true
			case <-time.After(5 * time.Millisecond):
				clock.Advance(time.Millisecond)
			}
		}
	}
	if err := n.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	ls := &email.LogSender{Logger: logger}
	for _, e := range all {
		m, _ := email.Render(cfg, e)
		if err := ls.Send(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	check("logs", logs.String())
	if !strings.Contains(logs.String(), "email delivery failed") || !strings.Contains(logs.String(), "log sender") {
		t.Errorf("expected delivery and log-sender lines in the log:\n%s", logs.String())
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestRedactKeepsIdentifiers(t *testing.T) {
	// User names and key ids go through unchanged; only free text is scrubbed,
	// and only tokens shaped like a random 40-character key.
	e := sampleEvents()["rotation_failed"]
	e.Err = "user aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa failed; AKIAIOSFODNN7EXAMPLE; 0123456789012345678901234567890123456789"
	m, err := email.Render(testConfig(), e)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, e.Err) {
		t.Errorf("error text was altered; want it verbatim: %q", e.Err)
	}
}

func TestTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, email.TemplateEventText), []byte("custom {{.Title}} for {{.User}}\n{{.Fetch.Curl}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.TemplateDir = dir
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := email.Render(cfg, sampleEvents()["key_created"])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Text, "custom key created for ci-bot\ncurl -H \"X-API-Key: $KEYROT_API_KEY\" https://keyrot.example.com/credentials/ci-bot\n"; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if !strings.Contains(m.HTML, "Security best practices") {
		t.Error("HTML should still come from the built-in template")
	}

	if err := os.WriteFile(filepath.Join(dir, email.TemplateDigestHTML), []byte("{{.Nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err = cfg.Validate(); err == nil || !strings.Contains(err.Error(), "notify.templates: ") {
		t.Fatalf("Validate() = %v, want a notify.templates error", err)
	}
}
