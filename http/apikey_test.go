package http_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

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
		{"lifetime", `[{"name":"ci","hash":"` + h + `","users":["*"],"created":"2026-01-01T00:00:00Z","expires":"2026-04-01T00:00:00Z"}]`, 1, ""},
		{"expires before created", `[{"name":"ci","hash":"` + h + `","users":["*"],"created":"2026-04-01T00:00:00Z","expires":"2026-01-01T00:00:00Z"}]`, 0, "before created"},
		{"bad expires", `[{"name":"ci","hash":"` + h + `","users":["*"],"expires":"soon"}]`, 0, "decode"},
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

func TestNewKey(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)
	key, k, err := keyrothttp.NewKey("ci", []string{"ci-*"}, true, now, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if k.Hash != keyrothttp.HashAPIKey(key) || k.Name != "ci" || !k.List || !k.Created.Equal(now.Truncate(time.Second)) ||
		!k.Expires.Equal(time.Date(2026, 5, 30, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("NewKey = %+v", k)
	}
	if _, k, _ := keyrothttp.NewKey("forever", []string{"*"}, false, now, 0); !k.Expires.IsZero() {
		t.Errorf("lifetime 0: expires %s", k.Expires)
	}
	if _, _, err := keyrothttp.NewKey("", []string{"*"}, false, now, 0); err == nil {
		t.Error("a key without a name")
	}
}

func TestRotateKey(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	_, ci, _ := keyrothttp.NewKey("ci", []string{"ci-*"}, true, now.Add(-80*day), 90*day)
	_, other, _ := keyrothttp.NewKey("other", []string{"*"}, false, now, 0)
	next, key, err := keyrothttp.RotateKey([]keyrothttp.APIKey{ci, other}, "ci", now, 90*day, 7*day)
	if err != nil {
		t.Fatal(err)
	}
	if len(next) != 3 || next[0].Name != "ci" || next[1].Name != "ci.old" || next[2].Name != "other" {
		t.Fatalf("RotateKey = %+v", next)
	}
	succ, old := next[0], next[1]
	if succ.Hash != keyrothttp.HashAPIKey(key) || strings.Join(succ.Users, ",") != "ci-*" || !succ.List || !succ.Expires.Equal(now.Add(90*day)) {
		t.Errorf("successor = %+v", succ)
	}
	if old.Hash != ci.Hash || old.ReplacedBy != "ci" || !old.Expires.Equal(now.Add(7*day)) {
		t.Errorf("retiring = %+v", old)
	}

	// The overlap never extends a key's life.
	_, short, _ := keyrothttp.NewKey("ci", []string{"*"}, false, now.Add(-89*day), 90*day)
	next, _, _ = keyrothttp.RotateKey([]keyrothttp.APIKey{short}, "ci", now, 90*day, 7*day)
	if got, want := next[1].Expires, now.Add(day); !got.Equal(want) {
		t.Errorf("a key with a day left retires at %s, want %s", got, want)
	}

	_, _, errs := keyrothttp.RotateKey([]keyrothttp.APIKey{other}, "ci", now, 90*day, 7*day)
	if errs == nil || !strings.Contains(errs.Error(), "have: other") {
		t.Errorf("unknown name: %v", errs)
	}
	twice, _, _ := keyrothttp.RotateKey([]keyrothttp.APIKey{ci}, "ci", now, 90*day, 7*day)
	if _, _, err := keyrothttp.RotateKey(twice, "ci", now.Add(day), 90*day, 7*day); err == nil || !strings.Contains(err.Error(), "still valid until 2026-03-08T12:00:00Z") {
		t.Errorf("again within the overlap: %v", err)
	}
	if _, _, err := keyrothttp.RotateKey(twice, "ci.old", now, 90*day, 7*day); err == nil || !strings.Contains(err.Error(), "retiring") {
		t.Errorf("rotating the retiring key: %v", err)
	}
	third, _, err := keyrothttp.RotateKey(twice, "ci", now.Add(8*day), 90*day, 7*day)
	if err != nil || len(third) != 2 || third[1].Hash != twice[0].Hash {
		t.Errorf("after the overlap, the expired retiring key is dropped: %+v, %v", third, err)
	}
}
