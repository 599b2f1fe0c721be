package credcache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/internal/credcache"
	"github.com/keyrot/keyrot/mock"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYa1"

// key is a credential_process answer for a key created at created, with the
// default timings: NextRotation 5m later, Expiration 6m later.
func key(id string, created time.Time) keyrot.Credentials {
	p := keyrot.DefaultPolicy()
	return keyrot.Credentials{UserName: "app", AccessKeyID: id, SecretAccessKey: secret + id, CreateDate: created, CurrentSince: created,
		Timings: keyrot.Timings{RotateEvery: p.RotateEvery, DeactivateAfter: p.DeactivateAfter}}.Annotate(created)
}

// api is a fetch func with a switchable answer, counting its calls.
type api struct {
	mu    sync.Mutex
	creds keyrot.Credentials
	err   error
	calls atomic.Int32
}

func (a *api) set(c keyrot.Credentials, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds, a.err = c, err
}

func (a *api) fetch(context.Context) (keyrot.Credentials, error) {
	a.calls.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creds, a.err
}

func newCache(t *testing.T, clk *mock.Clock) *credcache.Cache {
	return &credcache.Cache{Dir: filepath.Join(t.TempDir(), "keyrot"), Now: clk.Now}
}

var k = credcache.Key{APIURL: "https://keyrot.example.com", User: "app", APIKey: "krt_0123456789abcdef0123456789abcdef"}

func get(t *testing.T, c *credcache.Cache, a *api) (credcache.Result, error) {
	t.Helper()
	return c.Get(context.Background(), k, a.fetch)
}

// TestCacheServesUntilTheRefreshTime: a second run is served from the file
// until NextRotation, then fetches again.
func TestCacheServesUntilTheRefreshTime(t *testing.T) {
	clk := mock.NewClock(t0)
	c := newCache(t, clk)
	a := &api{creds: key("AKIAFIRST", t0)}
	for i, want := range []credcache.Source{credcache.FromAPI, credcache.FromCache, credcache.FromCache} {
		r, err := get(t, c, a)
		if err != nil || r.Source != want || r.Creds.AccessKeyID != "AKIAFIRST" || r.Creds.SecretAccessKey != secret+"AKIAFIRST" || !r.Creds.Expiration.Equal(t0.Add(6*time.Minute)) {
			t.Fatalf("run %d: %+v (%v), %v; want source %v", i, r.Creds, r.Source, err, want)
		}
		clk.Advance(2 * time.Minute) // runs at 0, 2m, 4m: all before NextRotation (5m)
	}
	if got := a.calls.Load(); got != 1 {
		t.Fatalf("%d API calls in three runs, want 1", got)
	}
	// At 6m: past NextRotation, a new key is fetched and replaces the old.
	a.set(key("AKIASECOND", t0.Add(5*time.Minute)), nil)
	r, err := get(t, c, a)
	if err != nil || r.Source != credcache.FromAPI || r.Creds.AccessKeyID != "AKIASECOND" {
		t.Fatalf("after NextRotation: %+v, %v", r, err)
	}
	if r, _ := get(t, c, a); r.Source != credcache.FromCache || r.Creds.AccessKeyID != "AKIASECOND" {
		t.Fatalf("the new key is not cached: %+v", r)
	}
}

// TestCacheLateRotationIsCheckedAgain: a key fetched after its NextRotation
// (the engine is late) is fetched again after a quarter of the life it had
// left, not on every run.
func TestCacheLateRotationIsCheckedAgain(t *testing.T) {
	clk := mock.NewClock(t0.Add(5*time.Minute + 20*time.Second)) // 40s before Expiration
	c := newCache(t, clk)
	a := &api{creds: key("AKIALATE", t0)}
	if _, err := get(t, c, a); err != nil {
		t.Fatal(err)
	}
	clk.Advance(9 * time.Second)
	if r, _ := get(t, c, a); r.Source != credcache.FromCache {
		t.Fatalf("9s later: source %v, want the cache", r.Source)
	}
	clk.Advance(2 * time.Second) // 11s: past 40s/4
	if r, _ := get(t, c, a); r.Source != credcache.FromAPI {
		t.Fatalf("11s later: source %v, want the API", r.Source)
	}
}

// TestCacheServesWhileTheAPIIsDown: past the refresh time but before
// Expiration, an unreachable API (refused, 503, 429) is bridged by the
// cached key; after Expiration it is not.
func TestCacheServesWhileTheAPIIsDown(t *testing.T) {
	clk := mock.NewClock(t0)
	c := newCache(t, clk)
	a := &api{creds: key("AKIAFIRST", t0)}
	if _, err := get(t, c, a); err != nil {
		t.Fatal(err)
	}
	clk.Advance(5*time.Minute + 30*time.Second) // past NextRotation, 30s before Expiration
	for _, down := range []error{
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		fmt.Errorf("keyrot api: %w", &keyrothttp.APIError{Status: 503, Code: "not_ready"}),
		fmt.Errorf("keyrot api: %w", &keyrothttp.APIError{Status: 429, Code: "rate_limited"}),
	} {
		a.set(keyrot.Credentials{}, down)
		r, err := get(t, c, a)
		if err != nil || r.Source != credcache.FromCacheAPIDown || r.Creds.AccessKeyID != "AKIAFIRST" || r.Unreachable != down {
			t.Fatalf("API down (%v): %+v, %v", down, r, err)
		}
	}
	clk.Advance(30 * time.Second) // at Expiration: the cached key may be deactivated
	if r, err := get(t, c, a); err == nil {
		t.Fatalf("an expired cached key was served: %+v", r)
	}
}

// TestCacheForgetsADeniedKey: 401, 403 or 404 from the API is an answer:
// the entry is removed, and not served even while the API is then down.
func TestCacheForgetsADeniedKey(t *testing.T) {
	for _, status := range []int{401, 403, 404} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			clk := mock.NewClock(t0)
			c := newCache(t, clk)
			a := &api{creds: key("AKIAFIRST", t0)}
			if _, err := get(t, c, a); err != nil {
				t.Fatal(err)
			}
			clk.Advance(5*time.Minute + 10*time.Second)
			a.set(keyrot.Credentials{}, &keyrothttp.APIError{Status: status})
			if _, err := get(t, c, a); err == nil {
				t.Fatal("denied, yet served")
			}
			if _, err := os.Stat(c.Path(k)); !os.IsNotExist(err) {
				t.Fatalf("the entry survived a %d: %v", status, err)
			}
			a.set(keyrot.Credentials{}, errors.New("connection refused"))
			if _, err := get(t, c, a); err == nil {
				t.Fatal("served after a denial")
			}
		})
	}
}

// TestCacheIgnoresWhatItCannotTrust: a corrupted or truncated file, or one
// fetched with another API key, is a miss; the next fetch replaces it.
func TestCacheIgnoresWhatItCannotTrust(t *testing.T) {
	clk := mock.NewClock(t0)
	c := newCache(t, clk)
	a := &api{creds: key("AKIAFIRST", t0)}
	if _, err := get(t, c, a); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(c.Path(k))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"garbage":   []byte("\x00\xffnot json"),
		"truncated": good[:len(good)/2],
		"empty":     nil,
		"no secret": []byte(strings.Replace(string(good), secret+"AKIAFIRST", "", 1)),
	} {
		if err := os.WriteFile(c.Path(k), body, 0o600); err != nil {
			t.Fatal(err)
		}
		before := a.calls.Load()
		r, err := get(t, c, a)
		if err != nil || r.Source != credcache.FromAPI || a.calls.Load() != before+1 {
			t.Fatalf("%s file: %+v, %v; want a fetch", name, r, err)
		}
		if r, _ := get(t, c, a); r.Source != credcache.FromCache {
			t.Fatalf("%s file was not replaced by a good one", name)
		}
	}
	other := k
	other.APIKey = "krt_another-api-key-another-api-key-00"
	before := a.calls.Load()
	if r, err := c.Get(context.Background(), other, a.fetch); err != nil || r.Source != credcache.FromAPI || a.calls.Load() != before+1 {
		t.Fatalf("another API key was served the cached key: %+v, %v", r, err)
	}
}

// TestCacheFile: 0600 in a 0700 directory, named without the user or any
// secret, holding the API key's hash and not the key.
func TestCacheFile(t *testing.T) {
	clk := mock.NewClock(t0)
	c := newCache(t, clk)
	a := &api{creds: key("AKIAFIRST", t0)}
	if _, err := get(t, c, a); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.Path(k))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("file mode %v, want 0600", got)
	}
	di, err := os.Stat(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := di.Mode().Perm(); got != 0o700 {
		t.Errorf("directory mode %v, want 0700", got)
	}
	name := filepath.Base(c.Path(k))
	for _, s := range []string{k.User, k.APIKey, "AKIAFIRST", secret} {
		if strings.Contains(name, s) {
			t.Errorf("file name %q contains %q", name, s)
		}
	}
	body, _ := os.ReadFile(c.Path(k))
	if strings.Contains(string(body), k.APIKey) {
		t.Error("the file holds the API key")
	}
	entries, _ := os.ReadDir(c.Dir)
	if len(entries) != 1 {
		t.Errorf("%d files in the cache directory, want 1 (no temporary left)", len(entries))
	}
}

// TestCacheConcurrentProcesses: many processes (here goroutines, each with
// its own Cache on one directory, as separate processes have) refresh at
// once while the key rotates under them: every answer is a whole, matching
// key id and secret, and the file stays valid.
func TestCacheConcurrentProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keyrot")
	clk := mock.NewClock(t0)
	var gen atomic.Int32
	fetch := func(context.Context) (keyrot.Credentials, error) {
		// Each fetch sees a newer key, a minute from its Expiration and
		// past its NextRotation, so it is fetched again 15s later: writers
		// keep racing with different bodies.
		n := gen.Add(1)
		return key(fmt.Sprintf("AKIAGEN%06d", n), clk.Now().Add(-5*time.Minute)), nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for p := range 8 {
		wg.Go(func() {
			c := &credcache.Cache{Dir: dir, Now: clk.Now}
			for i := range 50 {
				r, err := c.Get(context.Background(), k, fetch)
				if err != nil {
					errs <- fmt.Errorf("process %d run %d: %w", p, i, err)
					return
				}
				if r.Creds.SecretAccessKey != secret+r.Creds.AccessKeyID {
					errs <- fmt.Errorf("process %d run %d: key %s came with another key's secret", p, i, r.Creds.AccessKeyID)
				}
				clk.Advance(2 * time.Second)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c := &credcache.Cache{Dir: dir, Now: clk.Now}
	r, err := c.Get(context.Background(), k, func(context.Context) (keyrot.Credentials, error) {
		return keyrot.Credentials{}, errors.New("connection refused")
	})
	if err != nil || r.Creds.SecretAccessKey != secret+r.Creds.AccessKeyID {
		t.Fatalf("the file left by the race is not a whole entry: %+v, %v", r, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d files left, want 1", len(entries))
	}
	if n := gen.Load(); n < 20 || n > 400 {
		t.Errorf("%d fetches in 400 runs over 800s of 15s refreshes, want some but far fewer than runs", n)
	}
	t.Logf("8 processes x 50 runs: %d fetches", gen.Load())
}

// TestCacheAsksAgainAtTheRefreshTime: a key from the API or the cache is
// to be asked for again at the refresh time, a key served while the API
// is down at its Expiration; ForSDK puts that time in Expiration.
func TestCacheAsksAgainAtTheRefreshTime(t *testing.T) {
	clk := mock.NewClock(t0)
	c := newCache(t, clk)
	a := &api{creds: key("AKIAFIRST", t0)}
	r, err := get(t, c, a)
	next, exp := t0.Add(5*time.Minute), t0.Add(6*time.Minute) // key(): no step lateness
	if err != nil || r.Source != credcache.FromAPI || !r.AskAgainAt.Equal(next) || !r.ForSDK().Expiration.Equal(next) || !r.Creds.Expiration.Equal(exp) {
		t.Fatalf("from the API: ask again at %s, ForSDK expires %s, key expires %s (%v); want %s, %s, %s",
			r.AskAgainAt, r.ForSDK().Expiration, r.Creds.Expiration, err, next, next, exp)
	}
	clk.Advance(time.Minute)
	if r, _ := get(t, c, a); r.Source != credcache.FromCache || !r.AskAgainAt.Equal(next) {
		t.Fatalf("from the cache: %v, ask again at %s; want %s", r.Source, r.AskAgainAt, next)
	}
	clk.Set(next)
	a.set(keyrot.Credentials{}, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")})
	// The API is down: the cached key, asked for again half way to its
	// Expiration each time, and at its Expiration in the last 2 seconds.
	for _, want := range []time.Time{next.Add(30 * time.Second), next.Add(45 * time.Second), next.Add(52500 * time.Millisecond)} {
		r, err = get(t, c, a)
		if err != nil || r.Source != credcache.FromCacheAPIDown || !r.AskAgainAt.Equal(want) || !r.ForSDK().Expiration.Equal(want) || !r.Creds.Expiration.Equal(exp) {
			t.Fatalf("API down at %s: %v, ask again at %s (%v); want the cached key, asked for again at %s", clk.Now(), r.Source, r.AskAgainAt, err, want)
		}
		clk.Set(want)
	}
	clk.Set(exp.Add(-2 * time.Second))
	if r, _ = get(t, c, a); !r.AskAgainAt.Equal(exp) {
		t.Fatalf("API down 2s before Expiration: ask again at %s, want %s", r.AskAgainAt, exp)
	}
	a.set(key("AKIASECOND", next), nil) // back up: a new key at once
	if r, err = get(t, c, a); err != nil || r.Source != credcache.FromAPI || r.Creds.AccessKeyID != "AKIASECOND" {
		t.Fatalf("API back: %+v (%v)", r, err)
	}
}

// TestCacheNeverAsksSoonerThanTheSDKCanCheck: an Expiration handed to an
// SDK is at least 2 s ahead, or the key's own if that is sooner: botocore
// checks the credentials after credential_process exits and refused a
// refresh time a few milliseconds ahead as "still expired" (found by
// cmd/keyrot's boto3 test at a 6 s cadence).
func TestCacheNeverAsksSoonerThanTheSDKCanCheck(t *testing.T) {
	for _, tt := range []struct {
		deactivateAfter time.Duration
		want            time.Duration // from now
	}{
		{8 * time.Second, 2 * time.Second},         // refresh time 1 s ahead: 2 s
		{3 * time.Second, 1500 * time.Millisecond}, // the key expires in 1.5 s: that
		{time.Minute, 7500 * time.Millisecond},     // a quarter of the 30 s left
	} {
		clk := mock.NewClock(t0.Add(time.Hour)) // the rotation is late
		c := newCache(t, clk)
		creds := keyrot.Credentials{UserName: "app", AccessKeyID: "AKIALATE", SecretAccessKey: secret, CreateDate: t0,
			Timings: keyrot.Timings{RotateEvery: 5 * time.Minute, DeactivateAfter: tt.deactivateAfter}}.Annotate(clk.Now())
		r, err := get(t, c, &api{creds: creds})
		if err != nil || !r.AskAgainAt.Equal(clk.Now().Add(tt.want)) {
			t.Errorf("deactivate_after %s: ask again at %s (%v), want now + %s", tt.deactivateAfter, r.AskAgainAt.Sub(clk.Now()), err, tt.want)
		}
		clk.Advance(500 * time.Millisecond)
		if r, _ := get(t, c, &api{creds: creds}); r.Source == credcache.FromCache && r.AskAgainAt.Sub(clk.Now()) < min(2*time.Second, creds.Expiration.Sub(clk.Now())) {
			t.Errorf("deactivate_after %s, from the cache: ask again %s from now", tt.deactivateAfter, r.AskAgainAt.Sub(clk.Now()))
		}
	}
}
