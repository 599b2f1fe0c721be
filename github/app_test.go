package github_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/github"
	"github.com/keyrot/keyrot/internal/testkit/githubtest"
	"github.com/keyrot/keyrot/mock"
)

func TestDeliverAsAGitHubApp(t *testing.T) {
	ctx := context.Background()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	clock := mock.NewClock(time.Now().Truncate(time.Second))
	srv := githubtest.Start(t, token)
	srv.App("1234", 42, &key.PublicKey, clock.Now)
	cl, _ := client(0)
	target, err := github.New(github.Config{APIURL: srv.URL, Repo: "acme/app", Client: cl,
		App: &github.App{ID: "1234", InstallationID: 42, Key: key, Clock: clock}})
	if err != nil {
		t.Fatal(err)
	}
	if err := target.Deliver(ctx, creds); err != nil {
		t.Fatal(err)
	}
	wantSecrets(t, srv, "repos/acme/app/", creds)
	// The installation token is reused while it is good for 5 more minutes.
	clock.Advance(50 * time.Minute)
	if err := target.Deliver(ctx, creds); err != nil {
		t.Fatal(err)
	}
	if got := countCalls(srv, "/access_tokens"); got != 1 {
		t.Errorf("%d installation tokens minted, want 1", got)
	}
	clock.Advance(6 * time.Minute)
	if err := target.Deliver(ctx, creds); err != nil {
		t.Fatal(err)
	}
	if got := countCalls(srv, "/access_tokens"); got != 2 {
		t.Errorf("%d installation tokens minted, want 2 (the first expires within 5 minutes)", got)
	}

	// Another key's JWT is refused, and the error says so without the JWT.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := github.New(github.Config{APIURL: srv.URL, Repo: "acme/app", Client: cl,
		App: &github.App{ID: "1234", InstallationID: 42, Key: other, Clock: clock}})
	if err != nil {
		t.Fatal(err)
	}
	err = impostor.Deliver(ctx, creds)
	if err == nil || !strings.Contains(err.Error(), "installation token: POST") || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "eyJ") {
		t.Errorf("Deliver with the wrong key = %v", err)
	}
}

func TestParsePrivateKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"pkcs1": {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
		"pkcs8": {Type: "PRIVATE KEY", Bytes: pkcs8},
	} {
		got, err := github.ParsePrivateKey(pem.EncodeToMemory(block))
		if err != nil || !got.Equal(key) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := github.ParsePrivateKey([]byte("not a key")); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := github.New(github.Config{Repo: "acme/app", App: &github.App{ID: "1"}}); err == nil {
		t.Error("an app without installation and key accepted")
	}
}
