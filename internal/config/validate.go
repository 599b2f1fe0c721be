package config

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/suggest"
	"github.com/keyrot/keyrot/smtp"
)

// Need is a part of keyrot a command uses. Every command rejects a value
// that is wrong wherever it is; a Need adds what must be present for that
// part to work, so a command does not ask for settings it never reads
// (keyrot status sends no email and needs no sender; keyrot serve reads no
// user selection).
type Need string

// The parts a command may need.
const (
	// NeedUsers: the rotation engine, which needs a user selection.
	NeedUsers Need = "users"
	// NeedMail: sending email, which needs a sender and an admin (and an
	// SMTP server with notify.via: smtp).
	NeedMail Need = "mail"
	// NeedAPI: serving the REST API, which needs at least one API key.
	NeedAPI Need = "api"
	// NeedDaemon: rotating on a schedule, which does not run dry.
	NeedDaemon Need = "daemon"
)

// Everything is what the daemon (keyrot run) needs, and so what keyrot
// validate checks.
var Everything = []Need{NeedUsers, NeedMail, NeedAPI, NeedDaemon}

var (
	iamUserName  = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
	secretPrefix = regexp.MustCompile(`^[\w/+=.@-]{1,256}$`)
)

// sectionValidator is a section that checks its own settings: a section
// added as a type with a validate method is checked with no other code.
type sectionValidator interface{ validate() error }

// Validate reports every problem at once (Errors), each with its setting's
// path and, where one fits, the value probably meant: the rules of every
// component (the policy, email, SMTP, the API's keys and listener), run
// here so that every command and the Lambdas reject the same inputs,
// before anything is built. needs adds the settings the command's parts
// require (see Need).
func (c Config) Validate(needs ...Need) error {
	var errs Errors
	report := func(field, reason string) { errs.add(field, "", reason) }
	c.Policy().Check(report)
	c.validateUsers(&errs, slices.Contains(needs, NeedUsers))
	c.validateRotation(&errs)
	if c.Rotation.DryRun && slices.Contains(needs, NeedDaemon) {
		errs.add("rotation.dry_run", "", "the daemon does not run dry: use `keyrot rotate --dry-run` or `keyrot status` to see the plan")
	}
	if !secretPrefix.MatchString(c.Secrets.Prefix) {
		errs.add("secrets.prefix", c.Secrets.Prefix, "must be 1-256 of letters, digits and /_+=.@-")
	}
	c.validateNotify(&errs, slices.Contains(needs, NeedMail))
	errs.addErr("notify", c.Notify.validateChannels())
	c.validateAPI(&errs, slices.Contains(needs, NeedAPI))
	oneOf(&errs, "log.format", c.Log.Format, "", "json", "text", "console")
	oneOf(&errs, "log.level", strings.ToLower(c.Log.Level), "", "debug", "info", "warn", "error")
	runValidators(reflect.ValueOf(c), &errs)
	return dedupe(errs).err()
}

// runValidators calls the validate method of every field of the struct v,
// at any depth, that has one: sections and settings declared with their
// own rules need no line here.
func runValidators(v reflect.Value, errs *Errors) {
	for i := range v.NumField() {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		if sv, ok := f.Interface().(sectionValidator); ok {
			errs.addErr(v.Type().Field(i).Name, sv.validate())
		}
		if isSection(f.Type()) {
			runValidators(f, errs)
		}
	}
}

func (c Config) validateUsers(errs *Errors, need bool) {
	for i, n := range c.Users.Names {
		if !iamUserName.MatchString(n) {
			errs.add(fmt.Sprintf("users.names[%d]", i), n, "not a valid IAM user name (1-64 of letters, digits and +=,.@_-)")
		}
	}
	if need && len(c.Users.Names) == 0 && c.Users.Tag == "" {
		errs.add("users", "", "no users selected: set users.names and/or users.tag (KEYROT_USERS_NAMES, KEYROT_USERS_TAG)")
	}
	if p := c.Users.PathPrefix; p != "" && (!strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/")) {
		errs.add("users.path_prefix", p, "an IAM path starts and ends with /")
	}
}

func (c Config) validateRotation(errs *Errors) {
	r := c.Rotation
	if r.Concurrency < 1 || r.Concurrency > 256 {
		errs.add("rotation.concurrency", strconv.Itoa(r.Concurrency), "must be 1 to 256")
	}
	if math.IsNaN(r.IAMRate) || math.IsInf(r.IAMRate, 0) || r.IAMRate <= 0 {
		errs.add("rotation.iam_rate", fmt.Sprint(r.IAMRate), "must be a positive number (IAM calls per second)")
	}
	if r.Resync <= 0 {
		errs.add("rotation.resync", r.Resync.String(), "must be positive")
	}
	if r.ObserveEvery < Duration(time.Hour) {
		errs.add("rotation.observe_every", r.ObserveEvery.String(), "must be at least 1h (every user is observed in full this often with bulk_observe)")
	}
}

// Email is the email package's view of the config; region is the AWS
// region the emails' direct-read instructions name.
func (c Config) Email(region string) email.Config {
	ec := email.Config{
		From: c.Notify.Sender, Admin: c.Notify.Admin, APIBaseURL: c.Notify.APIURL,
		SecretPrefix: c.Secrets.Prefix, Region: region, Ring: c.Policy().RingSize(), Contact: c.Notify.Contact,
		TemplateDir: c.Notify.Templates, SendRate: c.Notify.SendRate,
		Digest: time.Duration(c.Notify.Digest),
	}
	if c.Notify.Recipients != nil {
		ec.Recipients = map[keyrot.EventKind][]string{}
		for kind, to := range c.Notify.Recipients {
			ec.Recipients[keyrot.EventKind(kind)] = to
		}
	}
	if c.Notify.Via == "log" {
		// Nothing is delivered: placeholders keep the rendering whole.
		ec.From = cmp.Or(ec.From, "keyrot@localhost")
		ec.Admin = cmp.Or(ec.Admin, "admin@localhost")
	}
	return ec
}

// SMTPConfig is the SMTP sender's view of the config.
func (c Config) SMTPConfig() smtp.Config {
	s := c.Notify.SMTP
	return smtp.Config{Addr: s.Addr, Username: s.Username, Password: s.Password, TLS: s.TLS, InsecureSkipVerify: s.InsecureSkipVerify}
}

func (c Config) validateNotify(errs *Errors, need bool) {
	n := c.Notify
	oneOf(errs, "notify.via", n.Via, "ses", "smtp", "log")
	if n.QuietPeriod < 0 {
		errs.add("notify.quiet_period", n.QuietPeriod.String(), "must not be negative")
	}
	ec := c.Email("")
	if !need {
		// Addresses are checked when set, required only to send.
		ec.From = cmp.Or(ec.From, "keyrot@localhost")
		ec.Admin = cmp.Or(ec.Admin, "admin@localhost")
	}
	report := func(field, reason string) { errs.add(field, "", reason) }
	ec.Check(report)
	if n.Via == "smtp" && (need || n.SMTP.Addr != "") {
		c.SMTPConfig().Check(report)
	} else {
		oneOf(errs, "notify.smtp.tls", n.SMTP.TLS, "", "starttls", "tls", "none")
		if n.SMTP.Addr != "" {
			if _, _, err := net.SplitHostPort(n.SMTP.Addr); err != nil {
				errs.add("notify.smtp.addr", n.SMTP.Addr, "not host:port")
			}
		}
	}
}

func (c Config) validateAPI(errs *Errors, need bool) {
	a := c.API
	if err := checkListen(a.Listen); err != nil {
		errs.add("api.listen", a.Listen, err.Error())
	}
	switch {
	case (a.TLSCert == "") != (a.TLSKey == ""):
		errs.add("api.tls_cert", "", "set both api.tls_cert and api.tls_key, or neither")
	case a.TLSCert != "":
		if _, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey); err != nil {
			errs.add("api.tls_cert", a.TLSCert, "cannot load the certificate and key (api.tls_key): "+err.Error())
		}
	}
	names, hashes := map[string]int{}, map[string]int{}
	for i, k := range a.Keys {
		field := fmt.Sprintf("api.keys[%d]", i)
		if err := k.http().Validate(); err != nil {
			errs.add(field, "", err.Error()+" (make a key with: keyrot apikey new NAME)")
			continue
		}
		if j, dup := names[k.Name]; dup {
			errs.add(field+".name", k.Name, fmt.Sprintf("the same name as api.keys[%d]", j))
		}
		if j, dup := hashes[k.Hash]; dup {
			errs.add(field+".hash", "", fmt.Sprintf("the same hash as api.keys[%d]", j))
		}
		names[k.Name], hashes[k.Hash] = i, i
	}
	if math.IsNaN(a.RateLimit) || math.IsInf(a.RateLimit, 0) {
		errs.add("api.rate_limit", fmt.Sprint(a.RateLimit), "must be a finite number (negative: no limit)")
	}
	if a.Burst < 0 {
		errs.add("api.burst", strconv.Itoa(a.Burst), "must not be negative")
	}
	if a.Refresh <= 0 {
		errs.add("api.refresh", a.Refresh.String(), "must be positive: how often the API checks Secrets Manager for a promoted key (default 30s)")
	}
	if a.KeyLifetime < 0 {
		errs.add("api.key_lifetime", "", "must be 0 (no expiry) or positive")
	}
	if a.KeyWarnBefore < 0 {
		errs.add("api.key_warn_before", "", "must be 0 (no warning) or positive")
	}
	if k := a.FullAccessKey; k != "" {
		if bits := KeyStrength(k); bits < MinAPIKeyBits {
			// The key itself is never echoed.
			errs.add("API_KEY", "", fmt.Sprintf("too weak to be an API key (about %d bits; at least %d needed): make a random one with `keyrot apikey new NAME` (256 bits) or `openssl rand -hex 32`", bits, MinAPIKeyBits))
		}
	}
	if need && a.FullAccessKey == "" && len(a.Keys) == 0 && a.KeysSecret == "" {
		errs.add("api.keys", "", "the API has no keys: set API_KEY, api.keys (keyrot apikey new NAME) or api.keys_secret (KEYROT_API_KEYS_SECRET)")
	}
}

// http is the key as the API serves it.
func (k APIKey) http() keyrothttp.APIKey {
	return keyrothttp.APIKey{Name: k.Name, Hash: k.Hash, Users: k.Users, List: k.List,
		Created: k.Created, Expires: k.Expires, ReplacedBy: k.ReplacedBy}
}

// HTTPKeys are the API keys of api.keys as the API serves them.
func (c Config) HTTPKeys() []keyrothttp.APIKey {
	var keys []keyrothttp.APIKey
	for _, k := range c.API.Keys {
		keys = append(keys, k.http())
	}
	return keys
}

// checkListen accepts host:port with a numeric port (0: any free one).
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not host:port (%s; \":8000\" listens on every interface)", strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// oneOf reports field unless value is one of allowed (with the one
// probably meant), and says whether it was.
func oneOf(errs *Errors, field, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	var named []string
	for _, a := range allowed {
		if a != "" {
			named = append(named, a)
		}
	}
	reason := "must be " + strings.Join(named[:len(named)-1], ", ") + " or " + named[len(named)-1]
	errs.add(field, value, reason+suggest.Hint(value, named))
	return false
}

// dedupe drops a problem reported twice (a rule reached by two paths).
func dedupe(errs Errors) Errors {
	seen := map[Error]bool{}
	var out Errors
	for _, e := range errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return out
}
