package email

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/keyrot/keyrot"
)

//go:embed templates/*.tmpl
var builtins embed.FS

// Template file names. A file of the same name in Config.TemplateDir
// replaces the built-in one. The common files define the "fetch" and
// "practices" blocks the others include.
const (
	TemplateCommonText = "common.txt.tmpl"
	TemplateCommonHTML = "common.html.tmpl"
	TemplateEventText  = "event.txt.tmpl"
	TemplateEventHTML  = "event.html.tmpl"
	TemplateDigestText = "digest.txt.tmpl"
	TemplateDigestHTML = "digest.html.tmpl"
)

// Headers set on every message, for mail filters.
const (
	HeaderEvent   = "X-Keyrot-Event"   // the event kind, or "digest"
	HeaderWarning = "X-Keyrot-Warning" // the warning kind, on warnings
	HeaderUser    = "X-Keyrot-User"
	HeaderKeyID   = "X-Keyrot-Key-Id"
	HeaderAPIKey  = "X-Keyrot-Api-Key" // the API key's name, on API-key warnings
	HeaderTarget  = "X-Keyrot-Target"  // the sync target's id, on sync events
	HeaderAccount = "X-Keyrot-Account" // the AWS account, when keyrot works across accounts
)

// KindDigest is the kind reported to the result hook (and in the
// X-Keyrot-Event header) for a digest email.
const KindDigest keyrot.EventKind = "digest"

// DigestMaxEvents caps the events listed in one digest; the rest are
// counted but not listed, so a fleet-wide incident gives a readable email.
const DigestMaxEvents = 500

// EventData is what the event templates see.
type EventData struct {
	Kind    keyrot.EventKind
	Warning keyrot.WarningKind
	// Title is the filterable headline: "key created", "WARNING key in
	// use", "FAILED rotation".
	Title   string
	Subject string
	User    string
	KeyID   string
	Owner   string
	// Time is the event time in UTC, RFC 3339.
	Time    string
	Summary string
	// Next says what keyrot does next, NextAt when (RFC 3339 UTC, empty if
	// nothing is planned) and NextIn how long after the event.
	Next, NextAt, NextIn string
	// LastUsed is the key's last recorded use (RFC 3339 UTC, or "no recorded
	// use"), on deactivations and key-in-use warnings.
	LastUsed string
	// Err is the failure, on failed rotations.
	Err string
	// APIKey is the REST API key's name, on API-key warnings (User is
	// then empty and there is no key to fetch).
	APIKey string
	// Target is the sync target's id, on sync events.
	Target string
	// Account is the AWS account of the event, when keyrot works across
	// accounts; with no User the event is about the whole account.
	Account string
	// Action says what the reader should do.
	Action  string
	Fetch   Fetch
	Contact string
}

// Fetch holds the commands that fetch a user's current key.
type Fetch struct {
	User       string
	APIBaseURL string
	// Curl is the REST API call, with the API key taken from the
	// KEYROT_API_KEY environment variable (empty without an API URL).
	Curl string
	// CredentialProcess is the line for a profile in ~/.aws/config.
	CredentialProcess string
	// Direct reads the current key from Secrets Manager with keyrot, and
	// AWSCLI with the AWS CLI; both follow the secret ring to the current key.
	Direct   string
	AWSCLI   string
	SecretID string
}

// DigestData is what the digest templates see.
type DigestData struct {
	Subject   string
	Recipient string
	// Start and End are the first and last event times (RFC 3339 UTC).
	Start, End string
	Count      int
	Counts     []KindCount
	Users      []string
	Events     []EventData // at most DigestMaxEvents
	Omitted    int         // events not listed
	// Fetch has the commands for each user when there are a few, else one
	// set with the placeholder USER.
	Fetch   []Fetch
	Generic bool
	Contact string
}

// KindCount is how many events of one title a digest holds.
type KindCount struct {
	Title string
	Count int
}

// Renderer renders events into messages from the built-in templates and
// any overrides. It is safe for concurrent use.
type Renderer struct {
	cfg  Config
	text *texttemplate.Template
	html *htmltemplate.Template
}

// NewRenderer parses the templates: the built-ins, replaced file by file by
// those in cfg.TemplateDir.
func NewRenderer(cfg Config) (*Renderer, error) {
	cfg = cfg.withDefaults()
	load := func(name string) (string, error) {
		if cfg.TemplateDir != "" {
			b, err := os.ReadFile(filepath.Join(cfg.TemplateDir, name))
			if err == nil {
				return string(b), nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("email: read template: %w", err)
			}
		}
		b, err := builtins.ReadFile("templates/" + name)
		return string(b), err
	}
	r := &Renderer{cfg: cfg, text: texttemplate.New("text"), html: htmltemplate.New("html")}
	for _, name := range []string{TemplateCommonText, TemplateEventText, TemplateDigestText} {
		src, err := load(name)
		if err != nil {
			return nil, err
		}
		if _, err := r.text.New(name).Parse(src); err != nil {
			return nil, fmt.Errorf("email: parse template %s: %w", name, err)
		}
	}
	for _, name := range []string{TemplateCommonHTML, TemplateEventHTML, TemplateDigestHTML} {
		src, err := load(name)
		if err != nil {
			return nil, err
		}
		if _, err := r.html.New(name).Parse(src); err != nil {
			return nil, fmt.Errorf("email: parse template %s: %w", name, err)
		}
	}
	return r, nil
}

// Render renders one event into a message addressed to its recipients
// (Message.To is empty if the event has none).
func Render(cfg Config, e keyrot.Event) (Message, error) {
	r, err := NewRenderer(cfg)
	if err != nil {
		return Message{}, err
	}
	return r.Render(e)
}

// RenderDigest renders events into one digest message to one recipient.
func RenderDigest(cfg Config, to string, events []keyrot.Event) (Message, error) {
	r, err := NewRenderer(cfg)
	if err != nil {
		return Message{}, err
	}
	return r.RenderDigest(to, events)
}

// Recipients returns the addresses e is sent to.
func (r *Renderer) Recipients(e keyrot.Event) []string { return r.cfg.recipients(e) }

// Render renders one event into a message addressed to its recipients.
func (r *Renderer) Render(e keyrot.Event) (Message, error) {
	d := r.eventData(e)
	m := Message{
		From:    r.cfg.From,
		To:      r.cfg.recipients(e),
		Subject: d.Subject,
		Headers: map[string]string{
			HeaderEvent:      string(e.Kind),
			"Auto-Submitted": "auto-generated",
		},
	}
	if e.User != "" {
		m.Headers[HeaderUser] = oneLine(e.User)
	}
	if e.APIKey != "" {
		m.Headers[HeaderAPIKey] = oneLine(e.APIKey)
	}
	if e.KeyID != "" {
		m.Headers[HeaderKeyID] = oneLine(e.KeyID)
	}
	if e.Account != "" {
		m.Headers[HeaderAccount] = oneLine(e.Account)
	}
	if e.Warning != "" {
		m.Headers[HeaderWarning] = string(e.Warning)
	}
	if e.Target != "" {
		m.Headers[HeaderTarget] = oneLine(e.Target)
	}
	var err error
	if m.Text, m.HTML, err = r.execute(TemplateEventText, TemplateEventHTML, d); err != nil {
		return Message{}, fmt.Errorf("email: render %s for user %q: %w", e.Kind, e.User, err)
	}
	return m, nil
}

// RenderDigest renders events (in the order given) into one message to one
// recipient. A single event renders as Render would, addressed to to.
func (r *Renderer) RenderDigest(to string, events []keyrot.Event) (Message, error) {
	if len(events) == 0 {
		return Message{}, errors.New("email: render digest: no events")
	}
	if len(events) == 1 {
		m, err := r.Render(events[0])
		m.To, m.Cc = []string{to}, nil
		return m, err
	}
	d := DigestData{Recipient: to, Count: len(events), Contact: r.cfg.Contact}
	counts := map[string]int{}
	var titles []string
	first, last := events[0].Time, events[0].Time
	for i, e := range events {
		ed := r.eventData(e)
		if counts[ed.Title] == 0 {
			titles = append(titles, ed.Title)
		}
		counts[ed.Title]++
		if e.User != "" && !slices.Contains(d.Users, e.User) {
			d.Users = append(d.Users, e.User)
		}
		if i < DigestMaxEvents {
			d.Events = append(d.Events, ed)
		}
		if e.Time.Before(first) {
			first = e.Time
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	d.Omitted = len(events) - len(d.Events)
	for _, t := range titles {
		d.Counts = append(d.Counts, KindCount{Title: t, Count: counts[t]})
	}
	d.Start, d.End = stamp(first), stamp(last)
	if len(d.Users) <= 5 {
		for _, u := range d.Users {
			d.Fetch = append(d.Fetch, r.fetch(u))
		}
	} else {
		d.Generic = true
		d.Fetch = []Fetch{r.fetch("USER")}
	}
	var alerts []string
	for _, kc := range d.Counts {
		if strings.HasPrefix(kc.Title, "FAILED") || strings.HasPrefix(kc.Title, "WARNING") {
			alerts = append(alerts, fmt.Sprintf("%d %s", kc.Count, strings.Fields(kc.Title)[0]))
		}
	}
	d.Subject = fmt.Sprintf("[keyrot] digest: %d events for %d users", d.Count, len(d.Users))
	if len(alerts) > 0 {
		d.Subject += " (" + strings.Join(mergeCounts(alerts), ", ") + ")"
	}
	m := Message{
		From:    r.cfg.From,
		To:      []string{to},
		Subject: d.Subject,
		Headers: map[string]string{HeaderEvent: string(KindDigest), "Auto-Submitted": "auto-generated"},
	}
	var err error
	if m.Text, m.HTML, err = r.execute(TemplateDigestText, TemplateDigestHTML, d); err != nil {
		return Message{}, fmt.Errorf("email: render digest for %q: %w", to, err)
	}
	return m, nil
}

// mergeCounts adds up "3 WARNING", "2 WARNING" into "5 WARNING".
func mergeCounts(in []string) []string {
	total := map[string]int{}
	var order []string
	for _, s := range in {
		var n int
		var word string
		fmt.Sscanf(s, "%d %s", &n, &word)
		if _, ok := total[word]; !ok {
			order = append(order, word)
		}
		total[word] += n
	}
	out := make([]string, len(order))
	for i, w := range order {
		out[i] = fmt.Sprintf("%d %s", total[w], w)
	}
	return out
}

func (r *Renderer) execute(textName, htmlName string, data any) (text, html string, err error) {
	var tb, hb bytes.Buffer
	if err := r.text.ExecuteTemplate(&tb, textName, data); err != nil {
		return "", "", err
	}
	if err := r.html.ExecuteTemplate(&hb, htmlName, data); err != nil {
		return "", "", err
	}
	return tb.String(), hb.String(), nil
}

func (r *Renderer) eventData(e keyrot.Event) EventData {
	d := EventData{
		Kind:    e.Kind,
		Warning: e.Warning,
		Title:   Title(e),
		User:    oneLine(e.User),
		KeyID:   oneLine(e.KeyID),
		Owner:   oneLine(e.Owner),
		Time:    stamp(e.Time),
		Summary: keyrot.RedactSecrets(oneLine(e.Summary)),
		Next:    keyrot.RedactSecrets(e.Next),
		Err:     keyrot.RedactSecrets(e.Err),
		APIKey:  oneLine(e.APIKey),
		Target:  oneLine(e.Target),
		Account: oneLine(e.Account),
		Action:  action(e),
		Fetch:   r.fetch(e.User),
		Contact: r.cfg.Contact,
	}
	d.Subject = Subject(e)
	if !e.NextAt.IsZero() {
		d.NextAt = stamp(e.NextAt)
		if dt := e.NextAt.Sub(e.Time); dt > 0 {
			d.NextIn = keyrot.FormatDuration(dt.Round(time.Second))
		}
	}
	if e.Kind == keyrot.EventKeyDeactivated || e.Warning == keyrot.WarnKeyInUse {
		d.LastUsed = "no recorded use"
		if !e.LastUsed.IsZero() {
			d.LastUsed = stamp(e.LastUsed)
		}
	}
	if d.Account != "" {
		d.Fetch = r.fetchIn(d.Account, e.User)
	}
	if d.Summary == "" && d.APIKey != "" {
		d.Summary = d.Title + " for API key " + d.APIKey + "."
	} else if d.Summary == "" && d.User == "" && d.Account != "" {
		d.Summary = d.Title + " in account " + d.Account + "."
	} else if d.Summary == "" {
		d.Summary = d.Title + " for user " + d.User + "."
	}
	if d.Next == "" {
		d.Next = "Nothing further is scheduled for this key."
	}
	return d
}

func (r *Renderer) fetch(user string) Fetch { return r.fetchIn("", user) }

// fetchIn is fetch for a user of another account: the API path names the
// account, which any name resolves (GET /credentials/{account}/{user}).
func (r *Renderer) fetchIn(account, user string) Fetch {
	f := Fetch{User: user, APIBaseURL: r.cfg.APIBaseURL, SecretID: r.cfg.SecretPrefix + user}
	if r.cfg.APIBaseURL != "" {
		path := url.PathEscape(user)
		if account != "" {
			path = url.PathEscape(account) + "/" + path
		}
		u := r.cfg.APIBaseURL + "/credentials/" + path
		f.Curl = `curl -H "X-API-Key: $KEYROT_API_KEY" ` + u
		who := user
		if account != "" {
			who = account + "/" + user
		}
		f.CredentialProcess = "credential_process = keyrot credentials " + who + " --api " + r.cfg.APIBaseURL + " --format credential_process"
	}
	f.Direct = "keyrot credentials " + user + " --direct"
	f.AWSCLI = DirectReadCommand(r.cfg.SecretPrefix, user, r.cfg.Region, r.cfg.Ring)
	return f
}

// DirectReadCommand is the AWS CLI command that prints a user's current key
// as stored (JSON with AccessKeyId and SecretAccessKey). With a ring of one
// the key is always in <prefix><user>; with a larger ring the command first
// reads that secret's keyrot:current-secret tag, which names the member
// holding the current key (the user's own key may describe and read each).
func DirectReadCommand(prefix, user, region string, ring int) string {
	opt := ""
	if region != "" {
		opt = " --region " + region
	}
	id := shellQuote(prefix + user)
	if ring > 1 {
		id = `"$(aws secretsmanager describe-secret --secret-id ` + id + opt +
			` --query "Tags[?Key=='keyrot:current-secret'].Value | [0]" --output text)"`
	}
	return "aws secretsmanager get-secret-value --secret-id " + id + opt + " --query SecretString --output text"
}

// shellQuote quotes s for a POSIX shell unless it needs no quoting (IAM
// user names and secret prefixes usually do not).
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-+=,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Title is the filterable headline of an event: "key created", "key
// deactivated", "key deleted", "FAILED rotation", "WARNING key in use", ...
func Title(e keyrot.Event) string {
	switch e.Kind {
	case keyrot.EventKeyCreated:
		return "key created"
	case keyrot.EventKeyDeactivated:
		return "key deactivated"
	case keyrot.EventKeyDeleted:
		return "key deleted"
	case keyrot.EventRotationFailed:
		return "FAILED rotation"
	case keyrot.EventRotationRecovered:
		return "RECOVERED rotation"
	case keyrot.EventSyncFailed:
		return "FAILED sync"
	case keyrot.EventSyncRecovered:
		return "RECOVERED sync"
	case keyrot.EventWarning:
		return "WARNING " + warningTitle(e.Warning)
	}
	return strings.ReplaceAll(oneLine(string(e.Kind)), "_", " ")
}

func warningTitle(w keyrot.WarningKind) string {
	switch w {
	case keyrot.WarnKeyInUse:
		return "key in use"
	case keyrot.WarnUnmanagedKey:
		return "unmanaged key"
	case keyrot.WarnKeyLimit:
		return "key limit"
	case keyrot.WarnUserDeleted:
		return "user deleted"
	case keyrot.WarnSecretStale:
		return "secret stale"
	case keyrot.WarnCurrentInactive:
		return "current key inactive"
	case keyrot.WarnOrphanKey:
		return "orphan key"
	case keyrot.WarnAPIKeyExpiring:
		return "API key expiring"
	case keyrot.WarnSyncHoldExpired:
		return "sync hold expired"
	case "":
		return "condition"
	}
	return strings.ReplaceAll(oneLine(string(w)), "_", " ")
}

// Subject is an event's subject line: "[keyrot] <Title>: <user> <key id>",
// for example "[keyrot] key created: ci-bot AKIAEXAMPLE", or "[keyrot]
// WARNING API key expiring: <API key name>".
func Subject(e keyrot.Event) string {
	s := "[keyrot] " + Title(e) + ": " + oneLine(e.User) + oneLine(e.APIKey)
	if e.KeyID != "" {
		s += " " + oneLine(e.KeyID)
	}
	if e.User == "" && e.APIKey == "" && e.Account != "" {
		s += "account " + oneLine(e.Account)
	} else if e.Account != "" {
		s += " (account " + oneLine(e.Account) + ")"
	}
	return s
}

func action(e keyrot.Event) string {
	switch e.Kind {
	case keyrot.EventKeyCreated:
		return "If your programs fetch the key through keyrot (the API or credential_process below), nothing: they pick up the new key on their next fetch. Anything holding a copy of the previous key must switch to the new one before the previous key is deactivated."
	case keyrot.EventKeyDeactivated:
		return "The key no longer works. If something started failing with InvalidClientTokenId, it still used this key: point it at the current key (below). Until the key is deleted an administrator can re-activate it in IAM to buy time."
	case keyrot.EventKeyDeleted:
		return "Nothing, unless something is still configured with this key: it must use the current key (below)."
	case keyrot.EventRotationFailed:
		if e.User == "" && e.Account != "" {
			return "keyrot could not work in this account, so none of its users were rotated; their current keys keep working. Check that the role exists in the account and trusts keyrot (deploy/member.yaml), and the error above. keyrot keeps trying every pass and emails again when it works."
		}
		return "The current key keeps working. keyrot sends this once an incident has lasted several passes, keeps retrying, and emails again when rotation works again. Check the error above and the keyrot logs, or ask the contact below."
	case keyrot.EventRotationRecovered:
		if e.User == "" && e.Account != "" {
			return "Nothing: keyrot works in this account again."
		}
		return "Nothing: rotation works again for this user and the current key below is up to date."
	case keyrot.EventSyncFailed:
		return "The target named above did not take the current key: check the error (a revoked or under-scoped token, a renamed repository or project; docs/sync.md lists the scopes each target needs). The previous key stays active meanwhile, up to sync.max_hold. keyrot retries on every pass and emails again when the target has the current key."
	case keyrot.EventSyncRecovered:
		return "Nothing: the target holds the current key, and the previous key is deactivated on the normal timings."
	}
	switch e.Warning {
	case keyrot.WarnKeyInUse:
		return "Something still used this key after its successor became current. Find it (CloudTrail records calls by access key id) and switch it to the current key before the key is deleted."
	case keyrot.WarnUnmanagedKey:
		return "keyrot leaves this key alone (unmanaged_keys: report). Delete it if nothing needs it, or set unmanaged_keys: adopt to have keyrot rotate it out."
	case keyrot.WarnKeyLimit:
		return "The user has two access keys, so keyrot cannot create a new one, and it never deletes a key to make room. Delete the key nothing uses (IAM shows each key's last use)."
	case keyrot.WarnUserDeleted:
		return "The IAM user no longer exists. Remove it from keyrot's managed users, or recreate it."
	case keyrot.WarnSecretStale:
		return "The stored key no longer exists in IAM, so a consumer fetching it gets a key that does not work. Find out who deleted it (CloudTrail: DeleteAccessKey)."
	case keyrot.WarnCurrentInactive:
		return "The current key was deactivated outside keyrot and its consumers' calls fail. Re-activate it in IAM if that was a mistake, and find out who did it (CloudTrail: UpdateAccessKey)."
	case keyrot.WarnOrphanKey:
		return "keyrot created this key and could not store it, so nobody can have used it. It was deactivated at once and is deleted on the normal timings: nothing to do unless this repeats."
	case keyrot.WarnSyncHoldExpired:
		return "A sync target has not taken the current key for as long as sync.max_hold allows. Fix the target (see the sync_failed email and docs/sync.md), or copy the current key (below) there by hand; keyrot notices on its next pass."
	case keyrot.WarnAPIKeyExpiring:
		return "Rotate it before it expires: keyrot apikey rotate " + oneLine(e.APIKey) + " --keys-secret <the api.keys_secret> makes a successor, prints it once, and keeps this key working for an overlap (--overlap, default 7d); hand the new key to the key's consumers within the overlap. For a key kept in the config file, leave out --keys-secret and paste the lines it prints. After it expires, requests with the key get 401 \"API key expired\"."
	}
	return "Check the keyrot logs for this user."
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// oneLine keeps a value from breaking a header or a subject line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
