package http_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// TestClientNeverSendsTheKeyToAnotherOrigin: an API that redirects to
// another port (another origin) gets an error back, and the target never
// sees the API key; a redirect within the origin is followed with it.
func TestClientNeverSendsTheKeyToAnotherOrigin(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("Authorization")+r.Header.Get("X-Api-Key"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"AccessKeyId":"AKIAATTACKER","SecretAccessKey":"x"}`))
	}))
	defer other.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/old/") {
			// Within the origin: followed, with the key.
			http.Redirect(w, r, strings.TrimPrefix(r.URL.Path, "/old"), http.StatusMovedPermanently)
			return
		}
		if r.URL.Path == "/credentials/alice" && r.Header.Get("Authorization") != "" {
			// Proxy to the real API, to show the key arrived.
			resp := e.do(t, "GET", r.URL.Path, "Authorization: "+r.Header.Get("Authorization"))
			w.WriteHeader(resp.status)
			_, _ = w.Write([]byte(resp.body))
			return
		}
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	ctx := context.Background()

	for _, base := range []string{redirector.URL + "/elsewhere", strings.Replace(redirector.URL, "127.0.0.1", "localhost", 1) + "/elsewhere"} {
		c := &keyrothttp.Client{BaseURL: base, APIKey: e.keys.reader}
		_, err := c.Get(ctx, "alice")
		if !errors.Is(err, keyrothttp.ErrCrossOriginRedirect) {
			t.Fatalf("redirect to another port: err = %v, want ErrCrossOriginRedirect", err)
		}
		if strings.Contains(err.Error(), e.keys.reader) {
			t.Fatalf("error %q holds the API key", err)
		}
	}
	mu.Lock()
	if len(leaked) != 0 {
		t.Errorf("the other origin was called %d times (%q)", len(leaked), leaked)
	}
	mu.Unlock()

	c := &keyrothttp.Client{BaseURL: redirector.URL + "/old", APIKey: e.keys.reader}
	got, err := c.Get(ctx, "alice")
	if err != nil || got.SecretAccessKey != aliceSecret {
		t.Fatalf("same-origin redirect: %v, %v", got, err)
	}
}
