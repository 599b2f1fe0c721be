package gitlab_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/gitlab"
	"github.com/keyrot/keyrot/internal/restclient"
	"github.com/keyrot/keyrot/mock"
)

const token = "glpat-TESTTOKEN0123456789"

var (
	creds = keyrot.Credentials{UserName: "ci-bot", AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	next  = keyrot.Credentials{UserName: "ci-bot", AccessKeyID: "AKIAI44QH8DHBEXAMPLE", SecretAccessKey: "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}
)

func newTarget(t *testing.T, cfg gitlab.Config, timeout time.Duration) *gitlab.Target {
	t.Helper()
	clock := mock.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	clock.SetAutoAdvance(true) // backoff costs no real time
	cfg.Client = &restclient.Client{Clock: clock, Timeout: timeout, Attempts: 3}
	if cfg.Token == "" {
		cfg.Token = token
	}
	target, err := gitlab.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func valueOf(vars []gitlabVar, key, scope string) (gitlabVar, bool) {
	for _, v := range vars {
		if v.Key == key && v.EnvironmentScope == scope {
			return v, true
		}
	}
	return gitlabVar{}, false
}

func TestDeliverCreatesThenUpdatesProjectVariables(t *testing.T) {
	ctx := context.Background()
	g := startGitLab(t, token)
	target := newTarget(t, gitlab.Config{APIURL: g.url, Project: "acme/app", Masked: true, Protected: true}, 0)
	if err := target.Deliver(ctx, creds); err != nil {
		t.Fatal(err)
	}
	if err := target.Deliver(ctx, next); err != nil {
		t.Fatal(err)
	}
	vars := g.variables("projects/42")
	if len(vars) != 2 {
		t.Fatalf("variables = %+v, want two", vars)
	}
	for key, want := range map[string]string{"AWS_ACCESS_KEY_ID": next.AccessKeyID, "AWS_SECRET_ACCESS_KEY": next.SecretAccessKey} {
		v, ok := valueOf(vars, key, "*")
		if !ok || v.Value != want || !v.Masked || !v.Protected || !v.Raw || v.VariableType != "env_var" {
			t.Errorf("%s = %+v, want %q masked, protected, raw", key, v, want)
		}
	}
	// Created once (PUT 404, POST), then updated in place (PUT).
	var posts, puts int
	for _, c := range g.Calls() {
		switch {
		case c == "POST /api/v4/projects/acme%2Fapp/variables":
			posts++
		case strings.HasPrefix(c, "PUT /api/v4/projects/acme%2Fapp/variables/AWS_") && strings.Contains(c, "filter%5Benvironment_scope%5D=%2A"):
			puts++
		}
	}
	if posts != 2 || puts != 4 {
		t.Errorf("POSTs %d, PUTs %d (%q), want 2 and 4", posts, puts, g.Calls())
	}
}

func TestDeliverKeepsOtherEnvironmentScopes(t *testing.T) {
	ctx := context.Background()
	g := startGitLab(t, token)
	g.seed("projects/42", gitlabVar{Key: "AWS_ACCESS_KEY_ID", Value: "AKIASTAGINGEXAMPLE00", EnvironmentScope: "staging"})
	target := newTarget(t, gitlab.Config{APIURL: g.url, Project: "42", EnvironmentScope: "production"}, 0)
	for _, c := range []keyrot.Credentials{creds, next} {
		if err := target.Deliver(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	vars := g.variables("projects/42")
	if v, _ := valueOf(vars, "AWS_ACCESS_KEY_ID", "staging"); v.Value != "AKIASTAGINGEXAMPLE00" {
		t.Errorf("the staging variable became %q", v.Value)
	}
	if v, _ := valueOf(vars, "AWS_ACCESS_KEY_ID", "production"); v.Value != next.AccessKeyID {
		t.Errorf("the production variable is %q, want %q", v.Value, next.AccessKeyID)
	}
	if len(vars) != 3 {
		t.Errorf("variables = %+v, want three", vars)
	}
}

func TestDeliverGroupVariablesWithNames(t *testing.T) {
	g := startGitLab(t, token)
	target := newTarget(t, gitlab.Config{APIURL: g.url + "/", Group: "acme", AccessKeyIDName: "CI_KEY_ID", SecretAccessKeyName: "CI_SECRET"}, 0)
	if err := target.Deliver(context.Background(), creds); err != nil {
		t.Fatal(err)
	}
	vars := g.variables("groups/7")
	if v, _ := valueOf(vars, "CI_SECRET", "*"); v.Value != creds.SecretAccessKey || v.Masked {
		t.Errorf("CI_SECRET = %+v", v)
	}
	if v, _ := valueOf(vars, "CI_KEY_ID", "*"); v.Value != creds.AccessKeyID {
		t.Errorf("CI_KEY_ID = %+v", v)
	}
}

func TestDeliverFailures(t *testing.T) {
	short := creds
	short.SecretAccessKey = "short" // cannot be masked
	for _, tc := range []struct {
		name    string
		cfg     gitlab.Config
		creds   keyrot.Credentials
		setup   func(*fakeGitLab)
		want    string
		calls   int
		timeout time.Duration
	}{
		{name: "401 bad token", cfg: gitlab.Config{Project: "42", Token: "wrong"}, creds: creds, want: "401 Unauthorized", calls: 1},
		{name: "404 unknown project", cfg: gitlab.Config{Project: "acme/gone"}, creds: creds, want: "404 Not Found: 404 Project Not Found", calls: 2},
		{name: "400 value cannot be masked", cfg: gitlab.Config{Project: "42", Masked: true}, creds: short, want: `400 Bad Request: {"value":["is invalid"]}`, calls: 1},
		{name: "500 retried, then given up", cfg: gitlab.Config{Project: "42"}, creds: creds, setup: func(g *fakeGitLab) {
			g.Fail(func(*http.Request) int { return http.StatusInternalServerError })
		}, want: "500 Internal Server Error", calls: 3},
		{name: "timeout retried, then given up", cfg: gitlab.Config{Project: "42"}, creds: creds, setup: func(g *fakeGitLab) { g.Hang(true) }, want: "deadline exceeded", calls: 3, timeout: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGitLab(t, token)
			if tc.setup != nil {
				tc.setup(g)
			}
			tc.cfg.APIURL = g.url
			err := newTarget(t, tc.cfg, tc.timeout).Deliver(context.Background(), tc.creds)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Deliver = %v, want an error with %q", err, tc.want)
			}
			for _, secret := range []string{tc.creds.SecretAccessKey, token, "wrong"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q carries a secret", err)
				}
			}
			if got := len(g.Calls()); got != tc.calls {
				t.Errorf("%d requests (%q), want %d", got, g.Calls(), tc.calls)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]gitlab.Config{
		"no token":     {Project: "42"},
		"neither":      {Token: token},
		"both":         {Token: token, Project: "42", Group: "7"},
		"bad api url":  {Token: token, Project: "42", APIURL: "gitlab.com"},
		"bad api url2": {Token: token, Project: "42", APIURL: "://"},
	} {
		if _, err := gitlab.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
