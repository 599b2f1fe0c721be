// Package smtp sends keyrot's email through an SMTP server, for teams
// without SES: STARTTLS or implicit TLS, AUTH PLAIN, and a standard
// multipart/alternative message (RFC 5322, MIME, quoted-printable parts).
// The credentials come from the environment (KEYROT_SMTP_USERNAME,
// KEYROT_SMTP_PASSWORD), never from the config file.
package smtp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/keyrot/keyrot/email"
)

// TLS modes.
const (
	TLSStartTLS = "starttls" // plain connection upgraded with STARTTLS (port 587); the default
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // no encryption: only for a relay on loopback
)

// Config configures the SMTP sender.
type Config struct {
	// Addr is the server's host:port (notify.smtp.addr).
	Addr string
	// Username and Password authenticate with AUTH PLAIN, over TLS only
	// (from KEYROT_SMTP_USERNAME and KEYROT_SMTP_PASSWORD). Empty: no AUTH.
	Username, Password string
	// TLS is "starttls" (default), "tls" or "none" (notify.smtp.tls).
	TLS string
	// InsecureSkipVerify skips the server certificate check: for tests only.
	InsecureSkipVerify bool
	// RootCAs, if set, replaces the system roots for the server certificate.
	RootCAs *x509.CertPool
	// Timeout bounds the connection and each command; default 30s.
	Timeout time.Duration
	// HeloName is the name given in EHLO; default "localhost".
	HeloName string
}

// LogValue keeps the password out of logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", c.Addr), slog.String("tls", c.TLS),
		slog.String("username", c.Username), slog.Bool("password_set", c.Password != ""))
}

// Sender is an email.Sender on SMTP. It opens one connection per message.
type Sender struct {
	cfg  Config
	host string
	now  func() time.Time
}

var _ email.Sender = (*Sender)(nil)

// New validates cfg and returns a Sender. It does not connect.
func New(cfg Config) (*Sender, error) {
	if cfg.TLS == "" {
		cfg.TLS = TLSStartTLS
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	var first error
	cfg.Check(func(field, reason string) {
		if first == nil {
			first = fmt.Errorf("smtp: %s: %s", field, reason)
		}
	})
	if first != nil {
		return nil, first
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	return &Sender{cfg: cfg, host: host, now: time.Now}, nil
}

// Check reports every invalid field to report, by its config key or
// environment variable (the config package collects them with the other
// settings' problems). An empty TLS is the default, starttls.
func (c Config) Check(report func(field, reason string)) {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil || host == "" {
		report("notify.smtp.addr", fmt.Sprintf("%q is not host:port", c.Addr))
	}
	switch c.TLS {
	case "", TLSStartTLS, TLSImplicit:
	case TLSNone:
		if c.Username != "" && host != "" && !isLoopback(host) {
			report("notify.smtp.tls", "none would send the SMTP password in clear to a remote server: use starttls or tls")
		}
	default:
		report("notify.smtp.tls", fmt.Sprintf("%q is not starttls, tls or none", c.TLS))
	}
	if (c.Username == "") != (c.Password == "") {
		report("KEYROT_SMTP_USERNAME", "KEYROT_SMTP_USERNAME and KEYROT_SMTP_PASSWORD must be set together")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Send delivers m in one SMTP transaction. A 5xx reply (rejected
// recipient, failed authentication) is permanent; everything else is
// retryable.
func (s *Sender) Send(ctx context.Context, m email.Message) error {
	raw, envFrom, rcpts, err := Build(m, s.now())
	if err != nil {
		return email.Permanent(fmt.Errorf("smtp: build %q: %w", m.Subject, err))
	}
	if err := s.deliver(ctx, envFrom, rcpts, raw); err != nil {
		return classify(fmt.Errorf("smtp: send %q to %q via %s: %w", m.Subject, rcpts, s.cfg.Addr, err))
	}
	return nil
}

func (s *Sender) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName:         s.host,
		RootCAs:            s.cfg.RootCAs,
		InsecureSkipVerify: s.cfg.InsecureSkipVerify,
		MinVersion:         tls.VersionTLS12,
	}
}

func (s *Sender) deliver(ctx context.Context, from string, rcpts []string, raw []byte) error {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	var c *gosmtp.Client
	switch s.cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(conn, s.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake: %w", err)
		}
		c = gosmtp.NewClient(tc)
	case TLSStartTLS:
		if c, err = gosmtp.NewClientStartTLS(conn, s.tlsConfig()); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	default:
		c = gosmtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = s.cfg.Timeout, s.cfg.Timeout
	if s.cfg.HeloName != "" {
		if err := c.Hello(s.cfg.HeloName); err != nil {
			return fmt.Errorf("ehlo: %w", err)
		}
	}
	if s.cfg.Username != "" {
		if !c.SupportsAuth("PLAIN") {
			return email.Permanent(errors.New("server does not offer AUTH PLAIN"))
		}
		if err := c.Auth(sasl.NewPlainClient("", s.cfg.Username, s.cfg.Password)); err != nil {
			return fmt.Errorf("auth as %q: %w", s.cfg.Username, err)
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("rcpt to %q: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return c.Quit()
}

func classify(err error) error {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		return email.Permanent(err)
	}
	if email.IsPermanent(err) {
		return err
	}
	return email.Retryable(err)
}

// Build renders m as an RFC 5322 message: multipart/alternative with a
// quoted-printable text and HTML part, Date, Message-ID, MIME-Version and an
// RFC 2047 encoded Subject. It returns the message, the envelope sender and
// the envelope recipients.
func Build(m email.Message, now time.Time) (raw []byte, from string, rcpts []string, err error) {
	fromAddr, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, "", nil, fmt.Errorf("from %q: %w", m.From, err)
	}
	list := func(addrs []string) (string, error) {
		out := make([]string, 0, len(addrs))
		for _, a := range addrs {
			pa, err := mail.ParseAddress(a)
			if err != nil {
				return "", fmt.Errorf("recipient %q: %w", a, err)
			}
			out = append(out, pa.String())
			rcpts = append(rcpts, pa.Address)
		}
		return strings.Join(out, ", "), nil
	}
	to, err := list(m.To)
	if err != nil {
		return nil, "", nil, err
	}
	cc, err := list(m.Cc)
	if err != nil {
		return nil, "", nil, err
	}
	if len(rcpts) == 0 {
		return nil, "", nil, errors.New("no recipients")
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, "", nil, err
	}
	domain := fromAddr.Address[strings.LastIndexByte(fromAddr.Address, '@')+1:]

	var b bytes.Buffer
	header := func(k, v string) {
		b.WriteString(k + ": " + strings.Join(strings.Fields(v), " ") + "\r\n")
	}
	header("From", fromAddr.String())
	header("To", to)
	if cc != "" {
		header("Cc", cc)
	}
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id[:])+"@"+domain+">")
	header("MIME-Version", "1.0")
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		if strings.ContainsAny(k, ": \r\n") || isReserved(k) {
			continue
		}
		header(k, mime.QEncoding.Encode("utf-8", m.Headers[k]))
	}
	mw := multipart.NewWriter(&b)
	header("Content-Type", `multipart/alternative; boundary="`+mw.Boundary()+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		if part.body == "" {
			continue
		}
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.typ + "; charset=utf-8"},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, "", nil, err
		}
		qp := quotedprintable.NewWriter(pw)
		if _, err := io.WriteString(qp, strings.ReplaceAll(strings.ReplaceAll(part.body, "\r\n", "\n"), "\n", "\r\n")); err != nil {
			return nil, "", nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, "", nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", nil, err
	}
	return b.Bytes(), fromAddr.Address, rcpts, nil
}

func isReserved(k string) bool {
	switch textproto.CanonicalMIMEHeaderKey(k) {
	case "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type", "Content-Transfer-Encoding":
		return true
	}
	return false
}
