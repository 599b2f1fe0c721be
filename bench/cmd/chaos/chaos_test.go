package main

import (
	"bytes"
	"encoding/json"
	"html"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/sandbox"
)

func TestFindSecrets(t *testing.T) {
	const s1 = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	const s2 = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLE+KY"
	secrets := map[string]string{s1: "AKIAONE", s2: "AKIATWO"}
	tests := []struct {
		name, text string
		want       []string
	}{
		{"a JSON log line", `{"msg":"stored","secret":"` + s1 + `"}`, []string{"AKIAONE"}},
		{"inside a longer run", "xx" + s1 + "yy/" + s2 + "+", []string{"AKIAONE", "AKIATWO"}},
		{"cut short", s1[:39], nil},
		{"redacted", `{"SecretAccessKey":"[REDACTED]"}`, nil},
		{"HTML-escaped, once unescaped", html.UnescapeString(html.EscapeString(s2)), []string{"AKIATWO"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := findSecrets(tt.text, secrets); !slices.Equal(got, tt.want) {
				t.Errorf("findSecrets = %v, want %v", got, tt.want)
			}
		})
	}
}

var lastLineRE = regexp.MustCompile(`^chaos: user_cycles=\d+ kills=\d+ faults=\d+ consumer_calls=\d+ consumer_failures=\d+ lost_keys=\d+ stranded_users=\d+ leaks=\d+$`)

func TestReportLastLineAndVerdict(t *testing.T) {
	for name, tt := range map[string]struct {
		r  report
		ok bool
	}{
		"clean":             {report{userCycles: 12, kills: 3, faults: 40, consumerCalls: 900}, true},
		"a consumer failed": {report{consumerFailures: 1}, false},
		"a key lost":        {report{lostKeys: 1}, false},
		"a user stranded":   {report{stranded: map[string][]string{"u": {"no key"}}}, false},
		"a leak":            {report{leaks: 1}, false},
		"a violation":       {report{violations: []string{"email storm"}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			tt.r.print(&out)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if last := lines[len(lines)-1]; !lastLineRE.MatchString(last) {
				t.Errorf("last line %q", last)
			}
			if got := tt.r.ok(); got != tt.ok {
				t.Errorf("ok() = %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	for subject, want := range map[string][]string{
		"[keyrot] key created: chaos-01 AKIAEXAMPLE":      {"key created", "chaos-01", "AKIAEXAMPLE"},
		"[keyrot] FAILED rotation: chaos-02":              {"FAILED rotation", "chaos-02", ""},
		"[keyrot] WARNING key in use: chaos-03 AKIAOLDER": {"WARNING key in use", "chaos-03", "AKIAOLDER"},
	} {
		sm := subjectRE.FindStringSubmatch(subject)
		if sm == nil || !slices.Equal(sm[1:], want) {
			t.Errorf("%q: %q, want %q", subject, sm, want)
		}
	}
}

// TestPhasesAreAccepted: every phase the schedule draws is valid for the
// sandbox's fault endpoint.
func TestPhasesAreAccepted(t *testing.T) {
	sb, err := sandbox.New(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(sb)
	defer ts.Close()
	w := &world{o: options{throttle: 0.3, errors5xx: 0.2, lost: 0.2, latency: time.Second, propagation: 30 * time.Second}}
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := map[string]bool{}
	for range 200 {
		f, desc := w.drawPhase(rng)
		b, _ := json.Marshal(f)
		resp, err := http.Post(ts.URL+"/_sandbox/faults", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("phase %q (%s): status %d", desc, b, resp.StatusCode)
		}
		if f.PropagationDelay < baselinePropagation || f.PropagationDelay > 30*time.Second {
			t.Fatalf("phase %q: propagation %s", desc, f.PropagationDelay)
		}
		for _, r := range f.Rules {
			kinds[r.Kind] = true
		}
	}
	if len(kinds) != 3 {
		t.Errorf("200 phases drew the fault kinds %v, want all three", kinds)
	}
}
