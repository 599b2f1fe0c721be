package http_test

import (
	"regexp"
	"strings"
	"testing"

	keyrothttp "github.com/keyrot/keyrot/http"
)

func TestGenerateAPIKey(t *testing.T) {
	key, hash, err := keyrothttp.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^krt_[A-Za-z0-9_-]{43}$`).MatchString(key) {
		t.Errorf("key %q is not krt_ and 256 bits of base64url", key)
	}
	if got, want := hash, keyrothttp.HashAPIKey(key); got != want {
		t.Errorf("hash = %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(hash) || strings.Contains(hash, key) {
		t.Errorf("hash %q", hash)
	}
	other, _, _ := keyrothttp.GenerateAPIKey()
	if other == key {
		t.Error("two keys are equal")
	}
}

func TestHashAPIKey(t *testing.T) {
	// printf %s your-secure-api-key | sha256sum
	if got, want := keyrothttp.HashAPIKey("your-secure-api-key"), "sha256:619fbadde77b4c5ed23a0157622ab344b11411ae023ec5b02be1154499c8ee12"; got != want {
		t.Errorf("HashAPIKey = %q, want %q", got, want)
	}
	full := keyrothttp.FullAccessKey("env", "your-secure-api-key")
	if full.Hash != keyrothttp.HashAPIKey("your-secure-api-key") || !full.List || !full.Allows("anyone") {
		t.Errorf("FullAccessKey = %+v", full)
	}
}

func TestAllows(t *testing.T) {
	k := keyrothttp.APIKey{Name: "k", Users: []string{"alice", "ci-*", "svc-?"}}
	for _, tt := range []struct {
		user string
		want bool
	}{
		{"alice", true}, {"alice2", false}, {"ci-deploy", true}, {"ci-", true}, {"xci-deploy", false},
		{"svc-a", true}, {"svc-ab", false}, {"bob", false}, {"", false},
	} {
		if got := k.Allows(tt.user); got != tt.want {
			t.Errorf("Allows(%q) = %t, want %t", tt.user, got, tt.want)
		}
	}
}

func TestParseKeys(t *testing.T) {
	h := keyrothttp.HashAPIKey("krt_a")
	h2 := keyrothttp.HashAPIKey("krt_b")
	tests := []struct {
		name    string
		in      string
		n       int
		wantErr string
	}{
		{"list", `[{"name":"ci","hash":"` + h + `","users":["ci-*"],"list":true}]`, 1, ""},
		{"object, two keys during rotation", `{"keys":[{"name":"old","hash":"` + h + `","users":["*"]},{"name":"new","hash":"` + h2 + `","users":["*"]}]}`, 2, ""},
		{"plaintext key", `[{"name":"ci","hash":"krt_a","users":["*"]}]`, 0, "sha256:"},
		{"short hash", `[{"name":"ci","hash":"sha256:abcd","users":["*"]}]`, 0, "64 hex"},
		{"no name", `[{"hash":"` + h + `","users":["*"]}]`, 0, "name"},
		{"no users", `[{"name":"ci","hash":"` + h + `"}]`, 0, "users"},
		{"bad glob", `[{"name":"ci","hash":"` + h + `","users":["ci-["]}]`, 0, "pattern"},
		{"duplicate name", `[{"name":"ci","hash":"` + h + `","users":["*"]},{"name":"ci","hash":"` + h2 + `","users":["*"]}]`, 0, "duplicate"},
		{"duplicate hash", `[{"name":"a","hash":"` + h + `","users":["*"]},{"name":"b","hash":"` + h + `","users":["*"]}]`, 0, "same hash"},
		{"unknown field", `[{"name":"ci","hash":"` + h + `","users":["*"],"key":"krt_a"}]`, 0, "unknown field"},
		{"not json", `name: ci`, 0, "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := keyrothttp.ParseKeys(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(keys), tt.n; got != want {
				t.Errorf("%d keys, want %d", got, want)
			}
		})
	}
}

// TestKeyRotation: two keys are active at once while consumers move over,
// and SetKeys drops the old one.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	newKey, newHash, _ := keyrothttp.GenerateAPIKey()
	both := []keyrothttp.APIKey{
		{Name: "admin-old", Hash: keyrothttp.HashAPIKey(e.keys.admin), Users: []string{"*"}},
		{Name: "admin-new", Hash: newHash, Users: []string{"*"}},
	}
	if err := e.srv.SetKeys(both); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{e.keys.admin, newKey} {
		if got, want := e.do(t, "GET", "/credentials/alice", xkey(k)).status, 200; got != want {
			t.Errorf("during rotation: %d, want %d", got, want)
		}
	}
	if err := e.srv.SetKeys(both[1:]); err != nil {
		t.Fatal(err)
	}
	if got, want := e.do(t, "GET", "/credentials/alice", xkey(e.keys.admin)).status, 401; got != want {
		t.Errorf("old key after rotation: %d, want %d", got, want)
	}
	if got, want := e.do(t, "GET", "/credentials/alice", bearer(newKey)).status, 200; got != want {
		t.Errorf("new key after rotation: %d, want %d", got, want)
	}
	if err := e.srv.SetKeys([]keyrothttp.APIKey{{Name: "x", Hash: "plain", Users: []string{"*"}}}); err == nil {
		t.Error("SetKeys accepted an invalid key")
	}
}
