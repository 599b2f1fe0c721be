package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/internal/testkit"
)

// TestDevShowsTheWholeFlow runs `keyrot dev` as a newcomer would (with
// faster timings): keys are created, the adopted key is rotated out, emails
// reach the sandbox's outbox and the API serves the current key.
func TestDevShowsTheWholeFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds of wall time")
	}
	out, errs := &testkit.Buffer{}, &testkit.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan map[string]string, 1)
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: out, Stderr: errs, LookupEnv: func(string) (string, bool) { return "", false }, Open: openFile,
			Ready: func(a map[string]string) { ready <- a }}
		done <- m.Run(ctx, []string{"dev", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
			"--rotate-every", "4s", "--deactivate-after", "1s", "--delete-after", "1s", "--propagation-delay", "0s", "--ses-rate", "0"})
	}()
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case code := <-done:
		t.Fatalf("dev exited %d: %s %s", code, out, errs)
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not start")
	}
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("dev exit %d", code)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errs.String(), "event=key_deleted user=ci-bot") {
		if time.Now().After(deadline) {
			t.Fatalf("the adopted key was not rotated out:\n%s", errs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	banner := out.String()
	for _, want := range []string{"test double for AWS", "_sandbox/ses/outbox", "status page: " + addrs["api"] + "/ui", "export KEYROT_API_KEY=krt_", "/credentials/ci-bot"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	// The API serves ci-bot's key with the printed API key.
	var apiKey string
	for _, line := range strings.Split(banner, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "export KEYROT_API_KEY="); ok {
			apiKey = v
		}
	}
	req, _ := http.NewRequest("GET", addrs["api"]+"/credentials/ci-bot", nil)
	req.Header.Set("X-API-Key", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"AccessKeyId":"AKIA`) {
		t.Fatalf("API: %d %s", resp.StatusCode, body)
	}
	// The emails are in the outbox.
	resp, err = http.Get(addrs["sandbox"] + "/_sandbox/ses/outbox")
	if err != nil {
		t.Fatal(err)
	}
	var outbox []struct{ Subject string }
	if err := json.NewDecoder(resp.Body).Decode(&outbox); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(outbox) == 0 || !strings.HasPrefix(outbox[0].Subject, "[keyrot] ") {
		t.Fatalf("outbox = %+v", outbox)
	}
	var secret struct{ SecretAccessKey string }
	_ = json.Unmarshal(body, &secret)
	if secret.SecretAccessKey == "" || strings.Contains(errs.String(), secret.SecretAccessKey) || strings.Contains(errs.String(), apiKey) {
		t.Fatal("a secret reached the log")
	}
}
