package http_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
)

// FuzzHandler sends arbitrary methods, paths, queries and headers: the API
// never panics, never answers 5xx, and never puts a secret in a non-200 body.
func FuzzHandler(f *testing.F) {
	e := newEnv(f)
	h := e.srv.Handler()
	keys := []string{"", e.keys.admin, e.keys.ci, e.keys.reader, e.keys.nolist}
	for _, s := range []struct {
		method, path, query, header, value string
		key                                uint8
	}{
		{"GET", "/credentials/alice", "", "X-API-Key", "", 1},
		{"GET", "/credentials/alice", "format=credential_process", "", "", 1},
		{"GET", "/credentials/alice", "format=env&format=json", "Authorization", "Bearer ", 2},
		{"GET", "/credentials", "", "", "", 3},
		{"GET", "/credentials/ci-deploy", "format=%zz", "Authorization", "Bearer", 2},
		{"POST", "/credentials/bob", "", "Content-Length", "99999999", 4},
		{"HEAD", "/credentials/../metrics", "", "", "", 0},
		{"GET", "/credentials/a/b", "", "X-API-Key", "krt_", 0},
		{"OPTIONS", "*", "", "", "", 0},
		{"GET", "/credentials/" + strings.Repeat("x", 300), "", "", "", 1},
		{"G\x00T", "/credentials/\xff", "format=\x00", "Authorization", "Bearer \xff", 1},
		{"GET", "/readyz", "", "", "", 0},
		{"GET", "/openapi.yaml", "", "", "", 0},
	} {
		f.Add(s.method, s.path, s.query, s.header, s.value, s.key)
	}
	f.Fuzz(func(t *testing.T, method, path, query, header, value string, key uint8) {
		req := &http.Request{
			Method:     method,
			URL:        &url.URL{Path: path, RawQuery: query},
			Header:     http.Header{},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1, ProtoMinor: 1,
			Host:       "keyrot.test",
			RemoteAddr: "192.0.2.1:1234",
			Body:       http.NoBody,
			RequestURI: path,
		}
		if k := keys[int(key)%len(keys)]; k != "" {
			if key&0x80 != 0 {
				req.Header.Set("Authorization", "Bearer "+k)
			} else {
				req.Header.Set("X-API-Key", k)
			}
		}
		if header != "" {
			req.Header[header] = append(req.Header[header], value)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%q %q?%q: %d %s", method, path, query, w.Code, w.Body)
		}
		if w.Code != http.StatusOK {
			body := w.Body.String()
			for _, s := range append(secrets(), keys[1:]...) {
				if strings.Contains(body, s) {
					t.Fatalf("%d body contains a secret: %s", w.Code, body)
				}
			}
		}
	})
}

// FuzzParseKeys: the API keys kept in a Secrets Manager secret
// (api.keys_secret) are outside input. Any value either fails with an
// error or gives keys that all validate, with unique names, and a server
// accepts them.
func FuzzParseKeys(f *testing.F) {
	_, hash, _ := keyrothttp.GenerateAPIKey()
	for _, s := range []string{
		`[{"name":"ci","hash":"` + hash + `","users":["ci-*"]}]`,
		`{"keys":[{"name":"ops","hash":"` + hash + `","users":["*"],"list":true}]}`,
		`[{"name":"a","hash":"` + hash + `"},{"name":"a","hash":"` + hash + `"}]`,
		`[{"name":"x","hash":"krt_not-a-hash"}]`,
		`{"keys":[],"extra":1}`, `[]`, `{`, `null`, ` [ ] `,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := keyrothttp.ParseKeys(strings.NewReader(s))
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, k := range keys {
			if err := k.Validate(); err != nil {
				t.Fatalf("ParseKeys(%q) accepted an invalid key %+v: %v", s, k, err)
			}
			if names[k.Name] {
				t.Fatalf("ParseKeys(%q) accepted the name %q twice", s, k.Name)
			}
			names[k.Name] = true
		}
		if _, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: keys, RateLimit: -1}, keyrothttp.NewCache(nil, keyrot.DefaultPolicy())); len(keys) > 0 && err != nil {
			t.Fatalf("ParseKeys(%q) gave keys a server refuses: %v", s, err)
		}
	})
}
