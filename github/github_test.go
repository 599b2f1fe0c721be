package github_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/github"
	"github.com/keyrot/keyrot/internal/restclient"
	"github.com/keyrot/keyrot/internal/testkit/githubtest"
	"github.com/keyrot/keyrot/mock"
)

const token = "github_pat_11TESTTOKEN0123456789"

var creds = keyrot.Credentials{UserName: "ci-bot", AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}

// client retries on a driven clock, so backoff costs no real time.
func client(timeout time.Duration) (*restclient.Client, *mock.Clock) {
	clock := mock.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	clock.SetAutoAdvance(true)
	return &restclient.Client{Clock: clock, Timeout: timeout, Attempts: 3}, clock
}

func newTarget(t *testing.T, cfg github.Config) *github.Target {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client, _ = client(0)
	}
	cfg.Token = token
	target, err := github.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// wantSecrets checks what the server decrypted under prefix.
func wantSecrets(t *testing.T, srv *githubtest.Server, prefix string, c keyrot.Credentials) {
	t.Helper()
	for name, want := range map[string]string{"AWS_ACCESS_KEY_ID": c.AccessKeyID, "AWS_SECRET_ACCESS_KEY": c.SecretAccessKey} {
		got, ok := srv.Secret(prefix + name)
		if !ok || got.Value != want {
			t.Errorf("%s%s decrypts to %q (stored %v), want %q", prefix, name, got.Value, ok, want)
		}
	}
}

func countCalls(srv *githubtest.Server, suffix string) int {
	n := 0
	for _, c := range srv.Calls() {
		if strings.HasSuffix(c, suffix) {
			n++
		}
	}
	return n
}

func TestDeliverRepoSecretsDecryptToTheKey(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.Start(t, token)
	target := newTarget(t, github.Config{APIURL: srv.URL, Repo: "acme/app"})
	if err := target.Deliver(ctx, creds); err != nil {
		t.Fatal(err)
	}
	wantSecrets(t, srv, "repos/acme/app/", creds)
	// The next key: the public key is cached, the secrets are replaced.
	next := creds
	next.AccessKeyID, next.SecretAccessKey = "AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
	if err := target.Deliver(ctx, next); err != nil {
		t.Fatal(err)
	}
	wantSecrets(t, srv, "repos/acme/app/", next)
	if got := countCalls(srv, "/public-key"); got != 1 {
		t.Errorf("public key fetched %d times, want 1 (cached)", got)
	}
	// The secret access key is written first.
	puts := slices.DeleteFunc(srv.Calls(), func(c string) bool { return !strings.HasPrefix(c, "PUT") })
	if want := []string{"PUT /repos/acme/app/actions/secrets/AWS_SECRET_ACCESS_KEY", "PUT /repos/acme/app/actions/secrets/AWS_ACCESS_KEY_ID"}; !slices.Equal(puts[:2], want) {
		t.Errorf("PUTs = %q, want %q first", puts, want)
	}
}

func TestDeliverEnvironmentOrgAndEnterprise(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.Start(t, token)
	for _, tc := range []struct {
		name   string
		cfg    github.Config
		prefix string
		vis    string
	}{
		{"environment", github.Config{APIURL: srv.URL, Repo: "acme/app", Environment: "production"}, "repos/acme/app/environments/production/", ""},
		{"org, private by default", github.Config{APIURL: srv.URL, Org: "acme"}, "orgs/acme/", "private"},
		{"org, selected", github.Config{APIURL: srv.URL, Org: "acme-sel", Visibility: "selected", SelectedRepositoryIDs: []int64{1296269}}, "orgs/acme-sel/", "selected"},
		{"enterprise server", github.Config{APIURL: srv.URL + "/api/v3/", Repo: "ghe/app"}, "repos/ghe/app/", ""},
		{"names overridden", github.Config{APIURL: srv.URL, Repo: "acme/named", AccessKeyIDName: "CI_KEY_ID", SecretAccessKeyName: "CI_SECRET"}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := newTarget(t, tc.cfg).Deliver(ctx, creds); err != nil {
				t.Fatal(err)
			}
			if tc.prefix == "" {
				if got, _ := srv.Secret("repos/acme/named/CI_SECRET"); got.Value != creds.SecretAccessKey {
					t.Errorf("CI_SECRET = %q", got.Value)
				}
				if got, _ := srv.Secret("repos/acme/named/CI_KEY_ID"); got.Value != creds.AccessKeyID {
					t.Errorf("CI_KEY_ID = %q", got.Value)
				}
				return
			}
			wantSecrets(t, srv, tc.prefix, creds)
			if got, _ := srv.Secret(tc.prefix + "AWS_ACCESS_KEY_ID"); got.Visibility != tc.vis {
				t.Errorf("visibility = %q, want %q", got.Visibility, tc.vis)
			}
		})
	}
	if got, _ := srv.Secret("orgs/acme-sel/AWS_ACCESS_KEY_ID"); !slices.Equal(got.SelectedRepositoryIDs, []int64{1296269}) {
		t.Errorf("selected_repository_ids = %v", got.SelectedRepositoryIDs)
	}
}

func TestDeliverRefetchesAChangedPublicKey(t *testing.T) {
	ctx := context.Background()
	srv := githubtest.Start(t, token)
	target := newTarget(t, github.Config{APIURL: srv.URL, Repo: "acme/app"})
	if err := target.Deliver(ctx, creds); err != nil {
		t.Fatal(err)
	}
	srv.RotateKey() // the cached key is stale: the next PUT gets 422
	next := creds
	next.AccessKeyID, next.SecretAccessKey = "AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
	if err := target.Deliver(ctx, next); err != nil {
		t.Fatal(err)
	}
	wantSecrets(t, srv, "repos/acme/app/", next)
	if got := countCalls(srv, "/public-key"); got != 2 {
		t.Errorf("public key fetched %d times, want 2", got)
	}
}

func TestDeliverFailures(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		setup   func(*githubtest.Server)
		cfg     func(*github.Config)
		want    string // in the error
		calls   int    // requests made
		timeout time.Duration
	}{
		{name: "401 bad token, not retried", cfg: func(c *github.Config) { c.Token = "wrong" }, want: "401 Unauthorized: Bad credentials", calls: 1},
		{name: "422 invalid name, not retried", cfg: func(c *github.Config) { c.SecretAccessKeyName = "GITHUB_SECRET" }, want: "422", calls: 2},
		{name: "500 retried, then given up", setup: func(s *githubtest.Server) {
			s.Fail(func(*http.Request) int { return http.StatusInternalServerError })
		}, want: "500 Internal Server Error", calls: 3},
		{name: "timeout retried, then given up", setup: func(s *githubtest.Server) { s.Hang(true) }, want: "deadline exceeded", calls: 3, timeout: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := githubtest.Start(t, token)
			if tc.setup != nil {
				tc.setup(srv)
			}
			cl, _ := client(tc.timeout)
			cfg := github.Config{APIURL: srv.URL, Repo: "acme/app", Client: cl, Token: token}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			target, err := github.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = target.Deliver(ctx, creds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Deliver = %v, want an error with %q", err, tc.want)
			}
			for _, secret := range []string{creds.SecretAccessKey, token, "wrong"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q carries a secret", err)
				}
			}
			if got := len(srv.Calls()); got != tc.calls {
				t.Errorf("%d requests (%q), want %d", got, srv.Calls(), tc.calls)
			}
		})
	}
}

func TestDeliverRetriesThroughA5xxAndHonoursRetryAfter(t *testing.T) {
	srv := githubtest.Start(t, token)
	failures := 0
	srv.Fail(func(r *http.Request) int {
		if r.Method == http.MethodPut && failures < 2 {
			failures++
			if failures == 1 {
				return http.StatusBadGateway
			}
			return http.StatusTooManyRequests
		}
		return 0
	})
	cl, clock := client(0)
	target := newTarget(t, github.Config{APIURL: srv.URL, Repo: "acme/app", Client: cl})
	if err := target.Deliver(context.Background(), creds); err != nil {
		t.Fatal(err)
	}
	wantSecrets(t, srv, "repos/acme/app/", creds)
	if got := clock.Waits(); len(got) != 2 {
		t.Errorf("waited %v, want two backoffs", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]github.Config{
		"no token":       {Repo: "acme/app"},
		"no repo or org": {Token: token},
		"both":           {Token: token, Repo: "acme/app", Org: "acme"},
		"repo without /": {Token: token, Repo: "acme"},
		"env with org":   {Token: token, Org: "acme", Environment: "prod"},
		"bad visibility": {Token: token, Org: "acme", Visibility: "public"},
		"bad api url":    {Token: token, Repo: "acme/app", APIURL: "ftp://x"},
	} {
		if _, err := github.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), token) {
			t.Errorf("%s: error carries the token", name)
		}
	}
}
