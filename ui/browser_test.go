package ui_test

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keyrot/keyrot/internal/testkit/fleettest"
)

var screenshots = flag.String("screenshots", "", "write the browser test's screenshots to this directory (go test ./ui -run Browser -screenshots ../docs)")

// chromium finds Debian's chromium (installed by .ci/run). Without it the
// test is skipped on a developer's machine and fails in CI.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run installs it (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (apt-get install chromium): the browser test needs it")
	return ""
}

// TestBrowserRendersPages logs in to /ui in headless Chromium through the
// form, then renders the fleet, a user page and the sandbox's outbox,
// checking that each screenshot shows something and each DOM holds the
// rows it should.
func TestBrowserRendersPages(t *testing.T) {
	exe := chromium(t)
	s := newSite(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The network is closed: nothing may reach out (QUIC, updates, sync).
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()

	// An unauthenticated visit lands on the login form; the form logs in.
	if err := chromedp.Do(browser, chromedp.Navigate(s.http.URL+"/ui"), chromedp.WaitVisible(chromedp.ID("api_key"))); err != nil {
		t.Fatalf("open /ui: %v", err)
	}
	if _, err := chromedp.RunResponse(browser, chromedp.SendKeys(chromedp.ID("api_key"), s.adminKey), chromedp.Submit(chromedp.ID("api_key"))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.ID("managed"))); err != nil {
		t.Fatalf("the fleet page after login: %v", err)
	}
	loc, err := chromedp.Run(browser, chromedp.Location())
	if err != nil || !strings.HasSuffix(loc, "/ui") {
		t.Errorf("after login the browser is at %q (%v), want /ui", loc, err)
	}
	rows := evalStrings(t, browser, `[...document.querySelectorAll("tr.user")].map(r => r.dataset.user)`)
	want := []string{fleettest.Adopted, fleettest.Fresh, fleettest.Other, fleettest.Missing, fleettest.Exempt}
	if !slices.Equal(rows, want) {
		t.Errorf("fleet rows = %v, want %v", rows, want)
	}
	shot(t, browser, "ui-fleet.png", chromedp.CaptureScreenshot())

	if err := chromedp.Do(browser, chromedp.Navigate(s.http.URL+"/ui/users/"+fleettest.Adopted), chromedp.WaitVisible(chromedp.ID("timeline"))); err != nil {
		t.Fatalf("alice's page: %v", err)
	}
	keys := evalStrings(t, browser, `[...document.querySelectorAll("#keys tr.key")].map(r => r.dataset.key)`)
	segments := evalStrings(t, browser, `[...document.querySelectorAll("#timeline rect.seg")].map(r => r.getAttribute("class"))`)
	history := evalStrings(t, browser, `[...document.querySelectorAll("#history tbody tr")].map(r => r.cells[1].textContent)`)
	if len(keys) != 2 || len(segments) < 4 || !slices.Contains(history, "made current") {
		t.Errorf("alice's page: keys %v, timeline segments %v, history %v", keys, segments, history)
	}
	shot(t, browser, "ui-user.png", chromedp.FullScreenshot(100)) // the whole page: timeline and events

	outbox := s.world.Sandbox.URL() + "/_sandbox/ses/outbox"
	if err := chromedp.Do(browser, chromedp.Navigate(outbox), chromedp.WaitVisible(chromedp.ID("outbox"))); err != nil {
		t.Fatalf("the outbox: %v", err)
	}
	mails := evalStrings(t, browser, `[...document.querySelectorAll("#outbox tr.mail")].map(r => r.dataset.id)`)
	subjects := evalStrings(t, browser, `[...document.querySelectorAll("#outbox tr.mail a:not(.tag)")].map(a => a.textContent)`)
	if n := len(s.world.Sandbox.Outbox()); len(mails) != n || n < 3 {
		t.Errorf("outbox page lists %d mails, the outbox holds %d (want at least 3)", len(mails), n)
	}
	if !slices.ContainsFunc(subjects, func(s string) bool { return strings.HasPrefix(s, "[keyrot] key created: "+fleettest.Fresh) }) {
		t.Errorf("outbox subjects %v lack bob's key created", subjects)
	}
	shot(t, browser, "sandbox-outbox.png", chromedp.CaptureScreenshot())
}

func evalStrings(t *testing.T, ctx context.Context, js string) []string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// shot takes a PNG of the page and checks it shows something: the right
// size and more than a few colours. With -screenshots it is kept.
func shot(t *testing.T, ctx context.Context, name string, capture chromedp.Action[[]byte]) {
	t.Helper()
	b, err := chromedp.Run(ctx, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if r := img.Bounds(); r.Dx() < 800 || r.Dy() < 600 {
		t.Errorf("screenshot %s is %dx%d", name, r.Dx(), r.Dy())
	}
	if n := colours(img, 50); n < 20 {
		t.Errorf("screenshot %s has %d colours: a blank page?", name, n)
	}
	if *screenshots != "" {
		if err := os.WriteFile(filepath.Join(*screenshots, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// colours counts the distinct colours of img, up to limit.
func colours(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y += 3 {
		for x := r.Min.X; x < r.Max.X; x += 3 {
			cr, cg, cb, ca := img.At(x, y).RGBA()
			seen[[4]uint32{cr, cg, cb, ca}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
