package http_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	keyrothttp "github.com/keyrot/keyrot/http"
)

func TestClient(t *testing.T) {
	e := newEnv(t)
	c := &keyrothttp.Client{BaseURL: e.url + "/", APIKey: e.keys.reader}
	ctx := context.Background()

	got, err := c.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserName != "alice" || got.SecretAccessKey != aliceSecret || !got.CreateDate.Equal(t0) || got.Expiration.IsZero() {
		t.Errorf("Get = %+v", got)
	}
	env, err := c.Credentials(ctx, "alice", keyrothttp.FormatEnv)
	if err != nil || !strings.HasPrefix(string(env), "export AWS_ACCESS_KEY_ID=") {
		t.Errorf("env = %q, %v", env, err)
	}

	for _, tt := range []struct {
		name   string
		client *keyrothttp.Client
		user   string
		status int
	}{
		{"forbidden", c, "bob", 403},
		{"not managed", c, "ghost", 404},
		{"wrong key", &keyrothttp.Client{BaseURL: e.url, APIKey: "krt_wrong_" + e.keys.admin}, "alice", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.Get(ctx, tt.user)
			var apiErr *keyrothttp.APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if got, want := apiErr.Status, tt.status; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if apiErr.Message == "" || !strings.Contains(err.Error(), tt.user) {
				t.Errorf("error %q does not say the user and the server's message", err)
			}
			for _, s := range append(secrets(), e.keys.admin, e.keys.reader) {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}

	if _, err := (&keyrothttp.Client{BaseURL: "localhost:8000", APIKey: e.keys.admin}).Get(ctx, "alice"); err == nil || strings.Contains(err.Error(), e.keys.admin) {
		t.Errorf("bad base URL: %v", err)
	}
	if _, err := c.Get(ctx, ""); err == nil {
		t.Error("empty user accepted")
	}
}
