package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"time"
)

// SES limits the sandbox enforces.
const (
	sesMaxRecipients  = 50               // per message, across To, Cc and Bcc
	sesMaxMessageSize = 40 * 1024 * 1024 // bytes, raw or simple
	sesOutboxSize     = 10000            // messages kept in the outbox
	sesMax24HourSend  = 50000            // quota reported by GetAccount
	sesReportedRate   = 14               // MaxSendRate reported when unlimited
)

// Email is one message SES accepted, as shown at GET /_sandbox/ses/outbox.
// For a raw message the fields are parsed from its MIME headers and parts
// (Text and HTML decoded from quoted-printable or base64), and Raw holds the
// message as sent.
type Email struct {
	MessageID            string            `json:"messageId"`
	From                 string            `json:"from"`
	To                   []string          `json:"to,omitempty"`
	Cc                   []string          `json:"cc,omitempty"`
	Bcc                  []string          `json:"bcc,omitempty"`
	ReplyTo              []string          `json:"replyTo,omitempty"`
	Subject              string            `json:"subject"`
	Text                 string            `json:"text,omitempty"`
	HTML                 string            `json:"html,omitempty"`
	Raw                  string            `json:"raw,omitempty"`
	Attachments          []EmailAttachment `json:"attachments,omitempty"`
	Tags                 map[string]string `json:"tags,omitempty"`
	ConfigurationSetName string            `json:"configurationSetName,omitempty"`
	SentBy               string            `json:"sentBy,omitempty"`  // ARN of the signer
	Account              string            `json:"account,omitempty"` // account the message was sent from
	Time                 time.Time         `json:"time"`
}

// EmailAttachment describes an attachment of an Email (its content is not kept).
type EmailAttachment struct {
	FileName    string `json:"fileName,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	Size        int    `json:"size"`
}

// sesService is the sandbox's SES v2: SendEmail into a bounded outbox, and
// GetAccount. Safe for concurrent use.
type sesService struct {
	clock   Clock
	changed func()

	mu      sync.Mutex
	rng     *rand.Rand
	box     []Email // ring buffer of at most sesOutboxSize
	head    int     // index of the oldest message when the ring is full
	minutes []sesMinute
	rate    float64 // max sends per second; 0 = unlimited
	tokens  float64
	last    time.Time // last token refill
}

// sesMinute counts sends in one minute, for SentLast24Hours.
type sesMinute struct {
	Minute int64 // Unix minutes
	Count  int
}

// newSES returns an SES v2 service with an empty outbox. seed makes message
// ids reproducible; changed is called after every mutation.
func newSES(clock Clock, seed int64, changed func()) *sesService {
	if clock == nil {
		clock = wallClock{}
	}
	if changed == nil {
		changed = func() {}
	}
	return &sesService{clock: clock, changed: changed, rng: rand.New(rand.NewPCG(uint64(seed), 0x5e5))}
}

// setMaxSendRate limits SendEmail to perSecond messages a second (by the
// injected clock), answering TooManyRequestsException beyond it; 0 removes
// the limit.
func (s *sesService) setMaxSendRate(perSecond float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rate = max(perSecond, 0)
	s.tokens = max(s.rate, 1)
	s.last = s.clock.Now()
}

// route maps an SES v2 REST request to an operation name.
func (s *sesService) route(method, path string) (string, bool) {
	path = strings.TrimSuffix(path, "/")
	switch {
	case method == http.MethodPost && path == "/v2/email/outbound-emails":
		return "SendEmail", true
	case method == http.MethodGet && path == "/v2/email/account":
		return "GetAccount", true
	}
	return "", false
}

// handle runs one SES v2 operation and returns the HTTP status and the
// response body to marshal as JSON.
func (s *sesService) handle(caller principal, op string, r *http.Request, body []byte) (int, any, *apiError) {
	if !caller.Admin {
		return 0, nil, errorf(http.StatusForbidden, "AccessDeniedException",
			"User: %s is not authorized to perform: ses:%s because no identity-based policy allows the ses:%s action",
			caller.ARN, op, op)
	}
	switch op {
	case "SendEmail":
		return s.sendEmail(caller, body)
	case "GetAccount":
		return s.getAccount()
	}
	return 0, nil, errorf(http.StatusNotFound, "NotFoundException", "The operation %q is not supported by the keyrot sandbox's SES.", op)
}

func sesBadRequest(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "BadRequestException", format, args...)
}

type sesContent struct {
	Data    string
	Charset string
}

type sesSendInput struct {
	FromEmailAddress string
	Destination      *struct {
		ToAddresses  []string
		CcAddresses  []string
		BccAddresses []string
	}
	ReplyToAddresses []string
	Content          *struct {
		Simple *struct {
			Subject *sesContent
			Body    *struct {
				Text *sesContent
				HTML *sesContent
			}
			Headers     []struct{ Name, Value string }
			Attachments []struct {
				RawContent  []byte
				FileName    string
				ContentType string
			}
		}
		Raw *struct {
			Data []byte
		}
		Template json.RawMessage
	}
	EmailTags []struct {
		Name  string
		Value string
	}
	ConfigurationSetName string
}

func checkAddresses(field string, addrs []string) *apiError {
	for _, a := range addrs {
		if _, err := mail.ParseAddress(a); err != nil {
			return sesBadRequest("Illegal address in %s.", field)
		}
	}
	return nil
}

func (s *sesService) sendEmail(caller principal, body []byte) (int, any, *apiError) {
	var in sesSendInput
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			return 0, nil, sesBadRequest("Could not parse the request body: %v", err)
		}
	}
	if len(body) > sesMaxMessageSize {
		return 0, nil, errorf(http.StatusBadRequest, "MessageRejected", "Message length is more than %d bytes.", sesMaxMessageSize)
	}
	if in.Content == nil {
		return 0, nil, sesBadRequest("Missing required parameter: Content.")
	}
	n := 0
	for _, set := range []bool{in.Content.Simple != nil, in.Content.Raw != nil, in.Content.Template != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return 0, nil, sesBadRequest("Content must contain exactly one of Simple, Raw or Template.")
	}
	if in.Content.Template != nil {
		return 0, nil, sesBadRequest("Template content is not supported by the keyrot sandbox.")
	}
	e := Email{
		From:                 in.FromEmailAddress,
		ReplyTo:              in.ReplyToAddresses,
		ConfigurationSetName: in.ConfigurationSetName,
		SentBy:               caller.ARN,
		Account:              caller.Account,
	}
	if in.Destination != nil {
		e.To, e.Cc, e.Bcc = in.Destination.ToAddresses, in.Destination.CcAddresses, in.Destination.BccAddresses
	}
	for _, t := range in.EmailTags {
		if t.Name == "" {
			return 0, nil, sesBadRequest("Tag name must not be empty.")
		}
		if e.Tags == nil {
			e.Tags = map[string]string{}
		}
		e.Tags[t.Name] = t.Value
	}
	if simple := in.Content.Simple; simple != nil {
		if e.From == "" {
			return 0, nil, sesBadRequest("Missing required parameter: FromEmailAddress.")
		}
		if simple.Subject == nil {
			return 0, nil, sesBadRequest("Missing required parameter: Content.Simple.Subject.")
		}
		if simple.Body == nil || simple.Body.Text == nil && simple.Body.HTML == nil {
			return 0, nil, sesBadRequest("Missing required parameter: Content.Simple.Body must contain Text or Html.")
		}
		e.Subject = simple.Subject.Data
		if simple.Body.Text != nil {
			e.Text = simple.Body.Text.Data
		}
		if simple.Body.HTML != nil {
			e.HTML = simple.Body.HTML.Data
		}
		for _, a := range simple.Attachments {
			if a.FileName == "" {
				return 0, nil, sesBadRequest("Missing required parameter: Attachment FileName.")
			}
			e.Attachments = append(e.Attachments, EmailAttachment{FileName: a.FileName, ContentType: a.ContentType, Size: len(a.RawContent)})
		}
	} else {
		if len(in.Content.Raw.Data) == 0 {
			return 0, nil, sesBadRequest("Missing required parameter: Content.Raw.Data.")
		}
		parsed, err := parseRawEmail(in.Content.Raw.Data)
		if err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "MessageRejected", "Could not parse the raw message: %v", err)
		}
		e.Raw = string(in.Content.Raw.Data)
		e.Subject, e.Text, e.HTML, e.Attachments = parsed.Subject, parsed.Text, parsed.HTML, parsed.Attachments
		if e.From == "" {
			e.From = parsed.From
		}
		if in.Destination == nil {
			e.To, e.Cc, e.Bcc = parsed.To, parsed.Cc, parsed.Bcc
		}
		if e.ReplyTo == nil {
			e.ReplyTo = parsed.ReplyTo
		}
		if e.From == "" {
			return 0, nil, sesBadRequest("Missing required parameter: FromEmailAddress, and the raw message has no From header.")
		}
	}
	if err := checkAddresses("FromEmailAddress", []string{e.From}); err != nil {
		return 0, nil, err
	}
	for _, f := range []struct {
		name  string
		addrs []string
	}{{"ToAddresses", e.To}, {"CcAddresses", e.Cc}, {"BccAddresses", e.Bcc}, {"ReplyToAddresses", e.ReplyTo}} {
		if err := checkAddresses(f.name, f.addrs); err != nil {
			return 0, nil, err
		}
	}
	recipients := len(e.To) + len(e.Cc) + len(e.Bcc)
	if recipients == 0 {
		return 0, nil, sesBadRequest("Missing required parameter: Destination must contain at least one recipient.")
	}
	if recipients > sesMaxRecipients {
		return 0, nil, sesBadRequest("Recipient count exceeds %d.", sesMaxRecipients)
	}

	s.mu.Lock()
	now := s.clock.Now()
	if s.rate > 0 {
		if elapsed := now.Sub(s.last).Seconds(); elapsed > 0 {
			s.tokens = min(s.tokens+elapsed*s.rate, max(s.rate, 1))
		}
		s.last = now
		if s.tokens < 1 {
			s.mu.Unlock()
			return 0, nil, errorf(http.StatusTooManyRequests, "TooManyRequestsException", "Maximum sending rate exceeded.")
		}
		s.tokens--
	}
	e.Time = now
	e.MessageID = s.messageID(now)
	s.push(e)
	s.count(now)
	s.mu.Unlock()
	s.changed()
	return http.StatusOK, struct{ MessageId string }{e.MessageID}, nil
}

// messageID returns an id shaped like SES's. s.mu held.
func (s *sesService) messageID(now time.Time) string {
	return fmt.Sprintf("%016x-%08x-%04x-%04x-%04x-%012x-000000",
		now.UnixMilli(), s.rng.Uint32(), s.rng.Uint32()&0xffff, s.rng.Uint32()&0xffff,
		s.rng.Uint32()&0xffff, s.rng.Uint64()&0xffffffffffff)
}

// push appends to the outbox ring. s.mu held.
func (s *sesService) push(e Email) {
	if len(s.box) < sesOutboxSize {
		s.box = append(s.box, e)
		return
	}
	s.box[s.head] = e
	s.head = (s.head + 1) % len(s.box)
}

// count records a send for SentLast24Hours and drops counts older than a day.
// s.mu held.
func (s *sesService) count(now time.Time) {
	minute := now.Unix() / 60
	if n := len(s.minutes); n > 0 && s.minutes[n-1].Minute == minute {
		s.minutes[n-1].Count++
	} else {
		s.minutes = append(s.minutes, sesMinute{Minute: minute, Count: 1})
	}
	s.prune(now)
}

// prune drops minute counts older than 24 hours. s.mu held.
func (s *sesService) prune(now time.Time) {
	cut := now.Add(-24*time.Hour).Unix() / 60
	i := 0
	for i < len(s.minutes) && s.minutes[i].Minute <= cut {
		i++
	}
	if i > 0 {
		s.minutes = append(s.minutes[:0], s.minutes[i:]...)
	}
}

func (s *sesService) getAccount() (int, any, *apiError) {
	s.mu.Lock()
	s.prune(s.clock.Now())
	sent := 0
	for _, m := range s.minutes {
		sent += m.Count
	}
	rate := s.rate
	s.mu.Unlock()
	if rate == 0 {
		rate = sesReportedRate
	}
	type sendQuota struct {
		Max24HourSend   float64
		MaxSendRate     float64
		SentLast24Hours float64
	}
	return http.StatusOK, struct {
		DedicatedIpAutoWarmupEnabled bool
		EnforcementStatus            string
		ProductionAccessEnabled      bool
		SendingEnabled               bool
		SendQuota                    sendQuota
	}{
		EnforcementStatus:       "HEALTHY",
		ProductionAccessEnabled: false,
		SendingEnabled:          true,
		SendQuota:               sendQuota{Max24HourSend: sesMax24HourSend, MaxSendRate: rate, SentLast24Hours: float64(sent)},
	}, nil
}

// outbox returns the accepted messages, oldest first.
func (s *sesService) outbox() []Email {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Email, 0, len(s.box))
	out = append(out, s.box[s.head:]...)
	return append(out, s.box[:s.head]...)
}

// drainOutbox returns the outbox, oldest first, and empties it in the same
// step, so a reader that drains repeatedly sees every message exactly once.
func (s *sesService) drainOutbox() []Email {
	s.mu.Lock()
	out := make([]Email, 0, len(s.box))
	out = append(out, s.box[s.head:]...)
	out = append(out, s.box[:s.head]...)
	s.box, s.head = nil, 0
	s.mu.Unlock()
	s.changed()
	return out
}

// clearOutbox empties the outbox (the sending statistics are kept).
func (s *sesService) clearOutbox() {
	s.mu.Lock()
	s.box, s.head = nil, 0
	s.mu.Unlock()
	s.changed()
}

// sesSnapshot is the persisted form of the service.
type sesSnapshot struct {
	Outbox  []Email
	Minutes []sesMinute
}

// snapshot returns the outbox and sending statistics as JSON.
func (s *sesService) snapshot() (json.RawMessage, error) {
	box := s.outbox()
	s.mu.Lock()
	snap := sesSnapshot{Outbox: box, Minutes: append([]sesMinute(nil), s.minutes...)}
	s.mu.Unlock()
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("ses: snapshot: %w", err)
	}
	return b, nil
}

// restore replaces the outbox and sending statistics with a snapshot.
func (s *sesService) restore(raw json.RawMessage) error {
	var snap sesSnapshot
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &snap); err != nil {
			return fmt.Errorf("ses: restore: %w", err)
		}
	}
	if len(snap.Outbox) > sesOutboxSize {
		snap.Outbox = snap.Outbox[len(snap.Outbox)-sesOutboxSize:]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.box, s.head, s.minutes = snap.Outbox, 0, snap.Minutes
	return nil
}
