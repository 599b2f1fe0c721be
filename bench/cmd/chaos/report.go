package main

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keyrot/keyrot/sandbox"
)

// report gathers the figures and what went wrong.
type report struct {
	userCycles, kills, consumerCalls, consumerFailures, lostKeys, leaks int
	faults                                                              uint64
	stranded                                                            map[string][]string
	violations, details                                                 []string
}

func (r *report) violation(format string, args ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

func (r *report) detail(format string, args ...any) {
	r.details = append(r.details, fmt.Sprintf(format, args...))
}

func (r *report) strand(user, why string) {
	if r.stranded == nil {
		r.stranded = map[string][]string{}
	}
	r.stranded[user] = append(r.stranded[user], why)
}

// ok: no loss figure above 0 and no invariant broken.
func (r *report) ok() bool {
	return r.consumerFailures == 0 && r.lostKeys == 0 && len(r.stranded) == 0 && r.leaks == 0 && len(r.violations) == 0
}

func (r *report) print(out io.Writer) {
	for _, d := range r.details {
		fmt.Fprintln(out, "chaos:", d)
	}
	for _, u := range slices.Sorted(maps.Keys(r.stranded)) {
		fmt.Fprintf(out, "chaos: STRANDED %s: %s\n", u, strings.Join(r.stranded[u], "; "))
	}
	for _, v := range r.violations {
		fmt.Fprintln(out, "chaos: VIOLATION", v)
	}
	if len(r.violations) == 0 {
		fmt.Fprintln(out, "chaos: every invariant held")
	}
	fmt.Fprintf(out, "chaos: user_cycles=%d kills=%d faults=%d consumer_calls=%d consumer_failures=%d lost_keys=%d stranded_users=%d leaks=%d\n",
		r.userCycles, r.kills, r.faults, r.consumerCalls, r.consumerFailures, r.lostKeys, len(r.stranded), r.leaks)
}

// progress prints a line of figures every 30 s while the chaos goes on.
func (w *world) progress(ctx context.Context, wa *watcher, c *consumerSet, start time.Time) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cycles, violations := wa.figures()
		calls, failures := c.totals()
		w.mu.Lock()
		kills := w.engineKills + w.sbKills
		w.mu.Unlock()
		fmt.Printf("chaos: %s +%s user_cycles=%d kills=%d faults=%d consumer_calls=%d consumer_failures=%d violations=%d\n",
			time.Now().UTC().Format("15:04:05"), time.Since(start).Round(time.Second), cycles, kills, w.faultsInjected(), calls, failures, violations)
	}
}

// sideChecks polls the sandbox (issued keys, faults, emails), scrapes
// /metrics and probes the API with bad requests, keeping every answer for
// the leak search.
type sideChecks struct{ wg sync.WaitGroup }

func (w *world) startSideChecks(ctx context.Context) *sideChecks {
	s := &sideChecks{}
	s.wg.Go(func() {
		for ctx.Err() == nil {
			_ = w.pollSandbox(ctx)
			sleep(ctx, 2*time.Second)
		}
	})
	s.wg.Go(func() {
		for n := 0; ctx.Err() == nil; n++ {
			w.scrape(ctx, n)
			sleep(ctx, 10*time.Second)
		}
	})
	return s
}

func (s *sideChecks) wait() { s.wg.Wait() }

// badRequests are requests the API must refuse without a secret in the
// answer: no key, a wrong key, a user it does not manage, a bad format.
func (w *world) badRequests() []*http.Request {
	var reqs []*http.Request
	add := func(path, key string) {
		req, _ := http.NewRequest(http.MethodGet, w.apiURL+path, nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		reqs = append(reqs, req)
	}
	u := w.users[0]
	add("/credentials/"+u, "")
	add("/credentials/"+u, "krt_wrong"+strings.Repeat("x", 40))
	add("/credentials/nobody-here", w.apiKey)
	add("/credentials/"+u+"?format=yaml", w.apiKey)
	add("/credentials/"+u+"/extra", w.apiKey)
	return reqs
}

// scrape saves /metrics and the answers to bad requests under scrapes/.
func (w *world) scrape(ctx context.Context, n int) {
	var b strings.Builder
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.apiURL+"/metrics", nil)
	if resp, err := w.http.Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		b.Write(body)
	}
	for _, req := range w.badRequests() {
		resp, err := w.http.Do(req.WithContext(ctx))
		if err != nil {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Printf("chaos: VIOLATION the API answered 200 to %s %s\n", req.Method, req.URL)
		}
		fmt.Fprintf(&b, "\n# %s %s -> %d\n%s\n", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	_ = os.WriteFile(filepath.Join(w.o.work, "scrapes", fmt.Sprintf("scrape-%04d.txt", n)), []byte(b.String()), 0o600)
}

// finalChecks, with both processes stopped: the figures, the email bounds
// and the leak search.
func (w *world) finalChecks(ctx context.Context, r *report, wa *watcher) {
	w.mu.Lock()
	r.kills = w.engineKills + w.sbKills
	r.detail("kills: %d of the engine, %d of the sandbox; %d fault phases", w.engineKills, w.sbKills, w.phases)
	var longest, sum time.Duration
	for _, d := range w.apiOutages {
		longest = max(longest, d)
		sum += d
	}
	if n := len(w.apiOutages); n > 0 {
		d := w.o.deactivateAfter
		r.detail("API outages (engine kill to /readyz): %d, mean %s, longest %s; a credential_process consumer bridges up to %s (deactivate_after/2 - max(deactivate_after/8, 2s))",
			n, (sum / time.Duration(n)).Round(time.Millisecond), longest.Round(time.Millisecond), (d/2 - max(d/8, 2*time.Second)).Round(time.Millisecond))
	}
	counts := sandbox.FaultCounts{}
	for _, c := range []sandbox.FaultCounts{w.faultsBase, w.faultsLive} {
		for k, v := range c {
			counts[k] += v
		}
	}
	w.mu.Unlock()
	r.faults = w.faultsInjected()
	r.detail("faults injected: %d throttles, %d 5xx, %d lost responses", counts[sandbox.FaultThrottle], counts[sandbox.Fault5xx], counts[sandbox.FaultLostResponse])
	w.checkEmails(r, wa)
	w.checkLeaks(r)
}

// subjectRE reads "[keyrot] <title>: <user>[ <key id>]".
var subjectRE = regexp.MustCompile(`^\[keyrot\] (.+?): (\S+)(?: (\S+))?$`)

// checkEmails bounds the emails per user and kind by the events the
// watcher saw: a key event is told at least once and at most once more
// per engine kill (a kill between telling and clearing the mark); a
// FAILED rotation once per incident; a warning once per key and quiet
// period. Anything above is a storm.
func (w *world) checkEmails(r *report, wa *watcher) {
	w.mu.Lock()
	mails := make([]sandbox.Email, 0, len(w.emails))
	for _, m := range w.emails {
		mails = append(mails, m)
	}
	kills := w.engineKills
	w.mu.Unlock()
	sort.Slice(mails, func(i, j int) bool { return mails[i].Time.Before(mails[j].Time) })
	if b, err := json.MarshalIndent(mails, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(w.o.work, "outbox.json"), b, 0o600)
	}
	// Emails by user and kind: the subject's title, "WARNING ..." as one.
	per := map[string]map[string]int{}
	for _, u := range w.users {
		per[u] = map[string]int{}
	}
	total := map[string]int{}
	var other []string
	for _, m := range mails {
		sm := subjectRE.FindStringSubmatch(m.Subject)
		if sm == nil || per[sm[2]] == nil {
			other = append(other, m.Subject)
			continue
		}
		kind := sm[1]
		if strings.HasPrefix(kind, "WARNING") {
			kind = "WARNING"
		}
		per[sm[2]][kind]++
		total[kind]++
	}
	wa.mu.Lock()
	defer wa.mu.Unlock()
	for _, u := range w.users {
		c, uw := per[u], wa.users[u]
		for kind, events := range map[string]int{"key created": uw.promotions, "key deactivated": uw.deactivated, "key deleted": uw.deleted} {
			if got := c[kind]; got > events+kills {
				r.violation("email storm: %s got %d %q emails for %d such events (%d engine kills)", u, got, kind, events, kills)
			} else if got < events-kills {
				r.violation("events not told: %s got %d %q emails for %d such events (%d engine kills)", u, got, kind, events, kills)
			}
			delete(c, kind)
		}
		if c["FAILED rotation"] > c["RECOVERED rotation"]+1 {
			r.violation("email storm: %s got %d FAILED emails and %d RECOVERED: more than one per incident", u, c["FAILED rotation"], c["RECOVERED rotation"])
		}
		if keys := len(uw.keys); c["WARNING"] > keys+kills {
			r.violation("email storm: %s got %d warnings for %d keys (%d engine kills)", u, c["WARNING"], keys, kills)
		}
		delete(c, "FAILED rotation")
		delete(c, "RECOVERED rotation")
		delete(c, "WARNING")
		for kind, n := range c {
			r.violation("%s got %d emails of an unknown kind %q", u, n, kind)
		}
	}
	if len(other) > 0 {
		r.violation("%d emails with an unexpected subject, e.g. %q", len(other), other[0])
	}
	r.detail("emails: %d in all: %d key created, %d deactivated, %d deleted, %d FAILED, %d RECOVERED, %d warnings",
		len(mails), total["key created"], total["key deactivated"], total["key deleted"], total["FAILED rotation"], total["RECOVERED rotation"], total["WARNING"])
}

// checkLeaks searches every log, scrape, API answer and email for every
// secret access key the sandbox ever issued, and for the API key.
func (w *world) checkLeaks(r *report) {
	w.mu.Lock()
	secrets := map[string]string{}
	for id, s := range w.secrets {
		secrets[s] = id
	}
	w.mu.Unlock()
	if len(secrets) == 0 {
		r.violation("no secret access key was collected: the leak search would find nothing")
		return
	}
	files, err := w.logFiles()
	if err != nil {
		r.violation("list logs: %v", err)
		return
	}
	var scanned int64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			r.violation("read %s: %v", f, err)
			continue
		}
		scanned += int64(len(b))
		text := string(b)
		if strings.HasSuffix(f, "outbox.json") {
			text += html.UnescapeString(text) // the HTML parts escape + and /
		}
		rel, _ := filepath.Rel(w.o.work, f)
		for _, id := range findSecrets(text, secrets) {
			r.leaks++
			r.detail("LEAK: the secret access key of %s is in %s", id, rel)
		}
		if strings.Contains(text, w.apiKey) {
			r.leaks++
			r.detail("LEAK: the API key is in %s", rel)
		}
	}
	r.detail("leak search: %d secret access keys and the API key in %d files (%d MB: logs, metrics, API error answers, emails)",
		len(secrets), len(files), scanned>>20)
}

// findSecrets returns the key ids whose secret appears in text: it looks
// at every 40-character window of every run of the characters a secret
// access key is made of.
func findSecrets(text string, secrets map[string]string) []string {
	const n = 40
	found := map[string]bool{}
	isSecretChar := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
	}
	for i := 0; i < len(text); {
		if !isSecretChar(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && isSecretChar(text[j]) {
			j++
		}
		for k := i; k+n <= j; k++ {
			if id, ok := secrets[text[k:k+n]]; ok {
				found[id] = true
			}
		}
		i = j
	}
	return slices.Sorted(maps.Keys(found))
}
