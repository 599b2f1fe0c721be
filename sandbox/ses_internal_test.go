package sandbox

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/mock"
)

var sesAdmin = principal{Admin: true, ARN: "arn:aws:iam::123456789012:root"}

func sesSimpleBody(to string) []byte {
	return fmt.Appendf(nil, `{"FromEmailAddress":"k@example.com","Destination":{"ToAddresses":[%q]},
		"Content":{"Simple":{"Subject":{"Data":"s"},"Body":{"Text":{"Data":"t"}}}}}`, to)
}

func TestSESRoute(t *testing.T) {
	s := newSES(nil, 1, nil)
	tests := []struct {
		method, path, op string
		ok               bool
	}{
		{"POST", "/v2/email/outbound-emails", "SendEmail", true},
		{"GET", "/v2/email/account", "GetAccount", true},
		{"GET", "/v2/email/outbound-emails", "", false},
		{"POST", "/v2/email/identities", "", false},
	}
	for _, tt := range tests {
		op, ok := s.route(tt.method, tt.path)
		if op != tt.op || ok != tt.ok {
			t.Errorf("route(%s %s) = %q, %v; want %q, %v", tt.method, tt.path, op, ok, tt.op, tt.ok)
		}
	}
}

func TestSESMaxSendRate(t *testing.T) {
	clock := mock.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	s := newSES(clock, 1, nil)
	s.setMaxSendRate(2)
	send := func() *apiError {
		_, _, err := s.handle(sesAdmin, "SendEmail", nil, sesSimpleBody("a@example.com"))
		return err
	}
	for i := range 2 {
		if err := send(); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	err := send()
	if err == nil || err.Code != "TooManyRequestsException" || err.Status != http.StatusTooManyRequests || err.Message != "Maximum sending rate exceeded." {
		t.Fatalf("third send in a second: %v, want TooManyRequestsException 429", err)
	}
	clock.Advance(500 * time.Millisecond)
	if err := send(); err != nil {
		t.Fatalf("send after half a second: %v", err)
	}
	if err := send(); err == nil {
		t.Fatalf("second send after half a second succeeded")
	}
	s.setMaxSendRate(0)
	for i := range 100 {
		if err := send(); err != nil {
			t.Fatalf("unlimited send %d: %v", i, err)
		}
	}
}

func TestSESOutboxIsBounded(t *testing.T) {
	s := newSES(nil, 1, nil)
	for i := range sesOutboxSize + 5 {
		if _, _, err := s.handle(sesAdmin, "SendEmail", nil, sesSimpleBody(fmt.Sprintf("u%d@example.com", i))); err != nil {
			t.Fatal(err)
		}
	}
	box := s.outbox()
	if len(box) != sesOutboxSize {
		t.Fatalf("outbox has %d messages, want %d", len(box), sesOutboxSize)
	}
	if got, want := box[0].To[0], "u5@example.com"; got != want {
		t.Errorf("oldest = %s, want %s", got, want)
	}
	if got, want := box[len(box)-1].To[0], fmt.Sprintf("u%d@example.com", sesOutboxSize+4); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
}

func TestSESValidation(t *testing.T) {
	s := newSES(nil, 1, nil)
	tests := []struct{ name, body, code string }{
		{"malformed JSON", `{"Content":`, "BadRequestException"},
		{"no content", `{"FromEmailAddress":"k@example.com","Destination":{"ToAddresses":["a@example.com"]}}`, "BadRequestException"},
		{"two contents", `{"FromEmailAddress":"k@example.com","Destination":{"ToAddresses":["a@example.com"]},
			"Content":{"Simple":{"Subject":{"Data":"s"},"Body":{"Text":{"Data":"t"}}},"Raw":{"Data":"Zm9v"}}}`, "BadRequestException"},
		{"no subject", `{"FromEmailAddress":"k@example.com","Destination":{"ToAddresses":["a@example.com"]},
			"Content":{"Simple":{"Body":{"Text":{"Data":"t"}}}}}`, "BadRequestException"},
		{"no body", `{"FromEmailAddress":"k@example.com","Destination":{"ToAddresses":["a@example.com"]},
			"Content":{"Simple":{"Subject":{"Data":"s"}}}}`, "BadRequestException"},
		{"empty raw", `{"Content":{"Raw":{"Data":""}}}`, "BadRequestException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.handle(sesAdmin, "SendEmail", nil, []byte(tt.body))
			if err == nil || err.Code != tt.code || err.Status != 400 {
				t.Errorf("got %v, want %s", err, tt.code)
			}
		})
	}
}

func TestSESSnapshotRestore(t *testing.T) {
	clock := mock.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	changes := 0
	s := newSES(clock, 1, func() { changes++ })
	for i := range 3 {
		if _, _, err := s.handle(sesAdmin, "SendEmail", nil, sesSimpleBody(fmt.Sprintf("u%d@example.com", i))); err != nil {
			t.Fatal(err)
		}
	}
	if changes != 3 {
		t.Errorf("changed called %d times, want 3", changes)
	}
	snap, err := s.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s2 := newSES(clock, 1, nil)
	if err := s2.restore(snap); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(s.outbox())
	b, _ := json.Marshal(s2.outbox())
	if string(a) != string(b) {
		t.Errorf("restored outbox differs:\n%s\n%s", a, b)
	}
	_, resp, _ := s2.handle(sesAdmin, "GetAccount", nil, nil)
	if got := fmt.Sprintf("%+v", resp); !strings.Contains(got, "SentLast24Hours:3") {
		t.Errorf("GetAccount after restore = %s", got)
	}
	if err := s2.restore(json.RawMessage(`{"Outbox":`)); err == nil {
		t.Error("restore of bad JSON succeeded")
	}
}

func FuzzParseRawEmail(f *testing.F) {
	f.Add([]byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody"))
	f.Add([]byte("From: a@example.com\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseRawEmail(data) // must not panic or hang
	})
}
