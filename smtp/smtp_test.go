package smtp_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/email"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/smtp"
)

// received is one message the test server accepted.
type received struct {
	from string
	to   []string
	data []byte
	user string
	tls  bool
}

type backend struct{ got chan received }

func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{b: b, c: c}, nil
}

type session struct {
	b *backend
	c *gosmtp.Conn
	r received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != "keyrot" || pass != "s3cret-Passw0rd" {
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		s.r.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.r.user == "" {
		return &gosmtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	s.r.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.r.to = append(s.r.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.data = b
	_, s.r.tls = s.c.TLSConnectionState()
	s.b.got <- s.r
	return nil
}
func (s *session) Reset()        { s.r = received{user: s.r.user} }
func (s *session) Logout() error { return nil }

// startServer runs a go-smtp server on loopback requiring TLS for AUTH.
func startServer(t *testing.T, implicitTLS bool) (addr string, pool *x509.CertPool, got chan received) {
	t.Helper()
	cert, pool := testkit.SelfSigned(t)
	b := &backend{got: make(chan received, 10)}
	s := gosmtp.NewServer(b)
	s.Domain = "localhost"
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicitTLS {
		l = tls.NewListener(l, s.TLSConfig)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String(), pool, b.got
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func events() []keyrot.Event {
	base := keyrot.Event{User: "ci-bot", KeyID: "AKIAIOSFODNN7EXAMPLE", Owner: "team-ci@example.com", Time: t0}
	var out []keyrot.Event
	for _, k := range email.Kinds {
		e := base
		e.Kind = k
		if k == keyrot.EventWarning {
			e.Warning = keyrot.WarnKeyInUse
		}
		e.Summary = "Summary of " + string(k) + " – with a non-ASCII dash."
		out = append(out, e)
	}
	return out
}

func TestSendToLoopbackServer(t *testing.T) {
	cfg := email.Config{From: "keyrot@example.com", Admin: "admins@example.com", APIBaseURL: "https://keyrot.example.com"}
	for _, mode := range []string{smtp.TLSStartTLS, smtp.TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			addr, pool, got := startServer(t, mode == smtp.TLSImplicit)
			s, err := smtp.New(smtp.Config{Addr: addr, TLS: mode, RootCAs: pool, Username: "keyrot", Password: "s3cret-Passw0rd", Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events() {
				want, err := email.Render(cfg, e)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Send(t.Context(), want); err != nil {
					t.Fatalf("send %s: %v", e.Kind, err)
				}
				var r received
				select {
				case r = <-got:
				case <-time.After(10 * time.Second):
					t.Fatal("server received nothing")
				}
				if !r.tls || r.user != "keyrot" {
					t.Errorf("tls = %v, user = %q; want an authenticated TLS session", r.tls, r.user)
				}
				if got, want := r.from, "keyrot@example.com"; got != want {
					t.Errorf("MAIL FROM %q, want %q", got, want)
				}
				if got, want := strings.Join(r.to, ","), "admins@example.com,team-ci@example.com"; got != want {
					t.Errorf("RCPT TO %q, want %q", got, want)
				}
				checkMessage(t, r.data, want)
				if bytes.Contains(r.data, []byte("s3cret-Passw0rd")) {
					t.Error("the SMTP password is in the message")
				}
			}
		})
	}
}

// checkMessage parses raw with net/mail and mime/multipart and compares it
// with the message sent.
func checkMessage(t *testing.T, raw []byte, want email.Message) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v", err)
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if subject != want.Subject {
		t.Errorf("Subject = %q, want %q", subject, want.Subject)
	}
	for _, h := range []string{"Date", "Message-Id", "From", "To"} {
		if msg.Header.Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if got, want := msg.Header.Get("Mime-Version"), "1.0"; got != want {
		t.Errorf("MIME-Version = %q, want %q", got, want)
	}
	if got, want := msg.Header.Get(email.HeaderEvent), want.Headers[email.HeaderEvent]; got != want {
		t.Errorf("%s = %q, want %q", email.HeaderEvent, got, want)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	parts := map[string]string{}
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		parts[ct] = strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	if got := parts["text/plain"]; got != want.Text {
		t.Errorf("text part differs from the rendered text:\n%s", got)
	}
	if got := parts["text/html"]; got != want.HTML {
		t.Errorf("html part differs from the rendered HTML:\n%s", got)
	}
}

func TestSendErrors(t *testing.T) {
	addr, pool, _ := startServer(t, false)
	m := email.Message{From: "keyrot@example.com", To: []string{"a@example.com"}, Subject: "s", Text: "t"}

	s, err := smtp.New(smtp.Config{Addr: addr, RootCAs: pool, Username: "keyrot", Password: "wrong-password"})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), m)
	if err == nil || !email.IsPermanent(err) {
		t.Errorf("bad password: err = %v, want a permanent error", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("the error carries the password: %v", err)
	}

	s, err = smtp.New(smtp.Config{Addr: addr, Username: "keyrot", Password: "s3cret-Passw0rd"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), m); err == nil {
		t.Error("an untrusted self-signed certificate must fail the send")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	s, err = smtp.New(smtp.Config{Addr: closed})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), m); err == nil || email.IsPermanent(err) {
		t.Errorf("connection refused: err = %v, want a retryable error", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   smtp.Config
		field string
	}{
		{"no addr", smtp.Config{}, "notify.smtp.addr"},
		{"bad tls", smtp.Config{Addr: "mail.example.com:587", TLS: "ssl"}, "notify.smtp.tls"},
		{"password in clear to a remote server", smtp.Config{Addr: "mail.example.com:25", TLS: "none", Username: "u", Password: "Zq9-secret-smtp-pw"}, "notify.smtp.tls"},
		{"username without password", smtp.Config{Addr: "mail.example.com:587", Username: "u"}, "KEYROT_SMTP_USERNAME"},
		{"valid", smtp.Config{Addr: "mail.example.com:587", Username: "u", Password: "p"}, ""},
		{"loopback relay in clear", smtp.Config{Addr: "127.0.0.1:25", TLS: "none", Username: "u", Password: "p"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := smtp.New(tc.cfg)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("New = %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), "smtp: "+tc.field+": ") {
				t.Fatalf("New = %v, want an error on %s", err, tc.field)
			}
			if strings.Contains(err.Error(), tc.cfg.Password) && tc.cfg.Password != "" {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}
