package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	keyrothttp "github.com/keyrot/keyrot/http"
)

// TestServeFromSecretsManager runs `keyrot serve` alone: it reads the keys
// `keyrot rotate` stored, picks up a rotation made by another process, and
// takes its API keys from a secret that can be changed while it runs.
func TestServeFromSecretsManager(t *testing.T) {
	tm := newTestMain(t)
	tm.createUser("ci-bot")
	ctx := context.Background()
	sm := awssm.NewFromConfig(tm.aws)
	keyA, hashA, _ := keyrothttp.GenerateAPIKey()
	keyB, hashB, _ := keyrothttp.GenerateAPIKey()
	keysJSON := func(name, hash string) string {
		return fmt.Sprintf(`[{"name":%q,"hash":%q,"users":["ci-*"],"list":true}]`, name, hash)
	}
	if _, err := sm.CreateSecret(ctx, &awssm.CreateSecretInput{Name: aws.String("keyrot/api-keys"), SecretString: aws.String(keysJSON("a", hashA))}); err != nil {
		t.Fatal(err)
	}
	cfg := tm.writeConfig(`
users: {names: [ci-bot]}
rotation: {rotate_every: 90d, deactivate_after: 7d, delete_after: 7d}
notify: {via: log}
api: {listen: "127.0.0.1:0", keys_secret: keyrot/api-keys, refresh: 200ms}
log: {format: json}
`)
	if code := tm.run(ctx, "rotate", "--config", cfg); code != exitOK {
		t.Fatalf("rotate: %d %s", code, tm.stderr)
	}

	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan map[string]string, 1)
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: tm.stdout, Stderr: tm.stderr, LookupEnv: os.LookupEnv, Open: openFile, Ready: func(a map[string]string) { ready <- a }}
		done <- m.Run(sctx, []string{"serve", "--config", cfg})
	}()
	var api string
	select {
	case a := <-ready:
		api = a["api"]
	case code := <-done:
		t.Fatalf("serve exited %d: %s", code, tm.stderr)
	}
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve exit %d", code)
		}
	}()

	get := func(key string) (int, keyrothttp.CredentialsResponse) {
		t.Helper()
		status, body := apiGet(t, api, "/credentials/ci-bot", key)
		var c keyrothttp.CredentialsResponse
		if status == 200 {
			if err := json.Unmarshal(body, &c); err != nil {
				t.Fatal(err)
			}
		}
		return status, c
	}
	// eventually polls a condition the background refresh makes true.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	code, first := get(keyA)
	if code != 200 || first.AccessKeyId == "" {
		t.Fatalf("GET with key A = %d", code)
	}
	// Another process rotates: serve sees it on its next refresh.
	if code := tm.run(ctx, "rotate", "--config", cfg, "--force"); code != exitOK {
		t.Fatalf("rotate --force: %d %s", code, tm.stderr)
	}
	eventually("the rotated key", func() bool { _, c := get(keyA); return c.AccessKeyId != first.AccessKeyId })
	// Rotate the API key itself: B replaces A in the secret.
	if _, err := sm.PutSecretValue(ctx, &awssm.PutSecretValueInput{SecretId: aws.String("keyrot/api-keys"), SecretString: aws.String(keysJSON("b", hashB))}); err != nil {
		t.Fatal(err)
	}
	eventually("API key B", func() bool { code, _ := get(keyB); return code == 200 })
	if code, _ := get(keyA); code != http.StatusUnauthorized {
		t.Fatalf("retired API key A: %d, want 401", code)
	}
}
