package sandbox_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/sandbox"
)

func getOutbox(t *testing.T, url, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	smMust(t, err, "request")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	smMust(t, err, "get "+url)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	smMust(t, err, "read "+url)
	return resp, string(b)
}

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// TestOutboxPages: a browser gets pages, everything else JSON as before;
// a message's own HTML is served alone under a sandboxing CSP, and what a
// message says is escaped in the outbox's pages.
func TestOutboxPages(t *testing.T) {
	e := newSESEnv(t)
	ctx := context.Background()
	hostile := `<script>alert(1)</script>`
	for _, in := range []struct{ subject, text, html string }{
		{"[keyrot] key created: ci-bot AKIAEXAMPLE", "The new key is current.", `<p style="color:green">The new key is <b>current</b>.</p>`},
		{"subject " + hostile, "text " + hostile, "<p>html</p>" + hostile},
	} {
		_, err := e.ses.SendEmail(ctx, simpleEmail("keyrot@example.com", []string{"ops@example.com"}, in.subject, in.text, in.html))
		smMust(t, err, "send")
	}
	base := e.srv.URL() + "/_sandbox/ses/outbox"

	resp, body := getOutbox(t, base, "")
	var list []sandbox.Email
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list) != 2 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("outbox without Accept: %s, %d messages, err %v; want JSON as before", resp.Header.Get("Content-Type"), len(list), err)
	}
	first, second := list[0], list[1]

	resp, body = getOutbox(t, base, browserAccept)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("outbox to a browser: %s, CSP %q", resp.Header.Get("Content-Type"), resp.Header.Get("Content-Security-Policy"))
	}
	if strings.Count(body, `class="mail"`) != 2 || strings.Index(body, second.MessageID) > strings.Index(body, first.MessageID) {
		t.Errorf("outbox page does not list both messages, newest first")
	}
	if strings.Contains(body, hostile) {
		t.Errorf("outbox page does not escape a subject")
	}

	resp, body = getOutbox(t, base+"/"+second.MessageID, browserAccept)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<iframe sandbox=""`) || !strings.Contains(body, `id="text"`) || strings.Contains(body, hostile) {
		t.Errorf("message page: %d; want its text escaped and its HTML in a sandboxed frame\n%s", resp.StatusCode, body)
	}
	resp, body = getOutbox(t, base+"/"+second.MessageID, "")
	var one sandbox.Email
	if err := json.Unmarshal([]byte(body), &one); err != nil || one.MessageID != second.MessageID || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("message as JSON: %v %+v", err, one)
	}

	resp, body = getOutbox(t, base+"/"+first.MessageID+"/html", browserAccept)
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != http.StatusOK || body != first.HTML || !strings.HasPrefix(csp, "sandbox;") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("message HTML: %d, CSP %q, body %q", resp.StatusCode, csp, body)
	}

	for _, accept := range []string{"", browserAccept} {
		if resp, _ := getOutbox(t, base+"/no-such-id", accept); resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown message (Accept %q): %d, want 404", accept, resp.StatusCode)
		}
	}
	if resp, _ := getOutbox(t, base+"/no-such-id/html", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown message HTML: %d, want 404", resp.StatusCode)
	}
}
