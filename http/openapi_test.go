package http_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	keyrothttp "github.com/keyrot/keyrot/http"
	"go.yaml.in/yaml/v3"
)

// openAPIDoc is the part of the OpenAPI document the test checks.
type openAPIDoc struct {
	OpenAPI string `yaml:"openapi"`
	Paths   map[string]map[string]struct {
		Parameters []struct {
			Ref string `yaml:"$ref"`
		} `yaml:"parameters"`
		Responses map[string]any `yaml:"responses"`
	} `yaml:"paths"`
	Components struct {
		Parameters map[string]struct {
			Schema struct {
				Enum []string `yaml:"enum"`
			} `yaml:"schema"`
		} `yaml:"parameters"`
		Schemas map[string]struct {
			Required   []string       `yaml:"required"`
			Properties map[string]any `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

// TestOpenAPI keeps the document true: it is served, every documented
// operation and status is produced by a real request and every status the
// API answers is documented, the formats are the server's, and the schemas
// name exactly the fields of the responses.
func TestOpenAPI(t *testing.T) {
	e := newEnv(t, func(c *keyrothttp.ServerConfig) { c.RateLimit, c.Burst = 1000, 1000 })
	served := e.do(t, "GET", "/openapi.yaml")
	if served.status != 200 || served.body != string(keyrothttp.OpenAPI) || served.header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("/openapi.yaml: %d %s", served.status, served.header.Get("Content-Type"))
	}
	var doc openAPIDoc
	if err := yaml.Unmarshal(keyrothttp.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for method, op := range ops {
			for status := range op.Responses {
				documented[fmt.Sprintf("%s %s %s", strings.ToUpper(method), p, status)] = true
			}
		}
	}

	// Requests that produce every status, each with the documented
	// operation it exercises.
	limited := newEnv(t, func(c *keyrothttp.ServerConfig) { c.RateLimit, c.Burst = 0.001, 1 })
	notReady := newEnvSource(t, &fakeSource{})
	blocked := newEnv(t, func(c *keyrothttp.ServerConfig) { c.AuthFailures = keyrothttp.AuthFailureLimit{Burst: 1} })
	blocked.do(t, "GET", "/credentials/alice", xkey("krt_wrong"))
	blocked.do(t, "GET", "/credentials/alice", xkey("krt_wrong"))
	type probe struct {
		e           *env
		op          string // "METHOD /documented/path"
		method, url string
		headers     []string
	}
	admin, reader := xkey(e.keys.admin), xkey(e.keys.reader)
	accts := newAccountsEnv(t, false)
	acctsLimited := newAccountsEnv(t, false, func(c *keyrothttp.ServerConfig) { c.RateLimit, c.Burst = 0.001, 1 })
	acctsLoading := newAccountsEnv(t, true)
	aAdmin, aReader := xkey(accts.keys.admin), xkey(accts.keys.reader)
	const acctPath = "GET /credentials/{account}/{user}"
	probes := []probe{
		{accts, acctPath, "GET", "/credentials/" + accountA + "/alice", []string{aAdmin}},
		{accts, acctPath, "GET", "/credentials/" + accountA + "/alice?format=credential_process", []string{aAdmin}},
		{accts, acctPath, "GET", "/credentials/12345/alice", []string{aAdmin}},
		{accts, acctPath, "GET", "/credentials/" + accountA + "/alice", nil},
		{accts, acctPath, "GET", "/credentials/" + accountA + "/bob", []string{aReader}},
		{accts, acctPath, "GET", "/credentials/" + accountA + "/ghost", []string{aReader}},
		{accts, acctPath, "PATCH", "/credentials/" + accountA + "/alice", []string{aAdmin}},
		{acctsLimited, acctPath, "GET", "/credentials/" + accountA + "/alice", []string{xkey(acctsLimited.keys.admin)}},
		{acctsLimited, acctPath, "GET", "/credentials/" + accountA + "/alice", []string{xkey(acctsLimited.keys.admin)}},
		{acctsLoading, acctPath, "GET", "/credentials/" + accountB + "/alice", []string{xkey(acctsLoading.keys.admin)}},
		{accts, "GET /credentials/{user}", "GET", "/credentials/alice", []string{aAdmin}},
		{e, "GET /credentials/{user}", "GET", "/credentials/alice", []string{admin}},
		{e, "GET /credentials/{user}", "GET", "/credentials/alice?format=credential_process", []string{admin}},
		{e, "GET /credentials/{user}", "GET", "/credentials/alice?format=env", []string{admin}},
		{e, "GET /credentials/{user}", "GET", "/credentials/alice?format=json", []string{admin}},
		{e, "GET /credentials/{user}", "GET", "/credentials/alice?format=yaml", []string{admin}},
		{e, "GET /credentials/{user}", "GET", "/credentials/alice", nil},
		{e, "GET /credentials/{user}", "GET", "/credentials/bob", []string{reader}},
		{e, "GET /credentials/{user}", "GET", "/credentials/ghost", []string{reader}},
		{e, "GET /credentials/{user}", "PATCH", "/credentials/alice", []string{admin}},
		{limited, "GET /credentials/{user}", "GET", "/credentials/alice", []string{xkey(limited.keys.admin)}},
		{limited, "GET /credentials/{user}", "GET", "/credentials/alice", []string{xkey(limited.keys.admin)}},
		{notReady, "GET /credentials/{user}", "GET", "/credentials/alice", []string{xkey(notReady.keys.admin)}},
		{e, "GET /credentials", "GET", "/credentials", []string{admin}},
		{e, "GET /credentials", "GET", "/credentials?format=env", []string{admin}},
		{e, "GET /credentials", "GET", "/credentials", nil},
		{e, "GET /credentials", "GET", "/credentials", []string{reader}},
		{e, "GET /credentials", "POST", "/credentials", []string{admin}},
		{limited, "GET /credentials", "GET", "/credentials", []string{xkey(limited.keys.ci)}},
		{limited, "GET /credentials", "GET", "/credentials", []string{xkey(limited.keys.ci)}},
		{notReady, "GET /credentials", "GET", "/credentials", []string{xkey(notReady.keys.admin)}},
		{e, "GET /healthz", "GET", "/healthz", nil},
		{e, "GET /healthz", "POST", "/healthz", nil},
		{e, "GET /readyz", "GET", "/readyz", nil},
		{e, "GET /readyz", "DELETE", "/readyz", nil},
		{notReady, "GET /readyz", "GET", "/readyz", nil},
		{e, "GET /metrics", "GET", "/metrics", nil},
		{e, "GET /metrics", "GET", "/metrics", []string{bearer(e.keys.reader)}},
		{e, "GET /metrics", "GET", "/metrics", []string{bearer("krt_wrong")}},
		{blocked, "GET /metrics", "GET", "/metrics", []string{xkey(blocked.keys.admin)}},
		{blocked, "GET /credentials/{user}", "GET", "/credentials/alice", []string{xkey(blocked.keys.admin)}},
		{e, "GET /metrics", "PUT", "/metrics", nil},
		{e, "GET /openapi.yaml", "GET", "/openapi.yaml", nil},
		{e, "GET /openapi.yaml", "POST", "/openapi.yaml", nil},
	}
	seen := map[string]bool{}
	for _, p := range probes {
		r := p.e.do(t, p.method, p.url, p.headers...)
		got := fmt.Sprintf("%s %d", p.op, r.status)
		if !documented[got] {
			t.Errorf("%s %s answers %d, which the document does not list for %s", p.method, p.url, r.status, p.op)
		}
		seen[got] = true
		if r.status == 200 && strings.HasPrefix(p.url, "/credentials") && !strings.Contains(p.url, "format=env") {
			checkSchema(t, doc, p.url, r.body)
		}
	}
	// With accounts, each listed user names its account.
	var list struct{ Credentials []map[string]any }
	if err := json.Unmarshal([]byte(accts.do(t, "GET", "/credentials", aAdmin).body), &list); err != nil || len(list.Credentials) == 0 {
		t.Fatalf("accounts list: %v", err)
	}
	checkFields(t, doc, "AccountCredentials", "/credentials (accounts)", list.Credentials[0])

	var missing []string
	for d := range documented {
		if !seen[d] {
			missing = append(missing, d)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented but never produced: %v", missing)
	}

	// The documented formats are exactly the server's.
	formats := doc.Components.Parameters["format"].Schema.Enum
	if got, want := strings.Join(formats, ","), strings.Join([]string{keyrothttp.FormatJSON, keyrothttp.FormatCredentialProcess, keyrothttp.FormatEnv}, ","); got != want {
		t.Errorf("documented formats %s, want %s", got, want)
	}
}

// checkSchema checks a 200 credentials body's fields against the schema.
func checkSchema(t *testing.T, doc openAPIDoc, url, body string) {
	t.Helper()
	var fields map[string]any
	if err := yaml.Unmarshal([]byte(body), &fields); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	schema := "Credentials"
	switch {
	case strings.Contains(url, "credential_process"):
		schema = "CredentialProcess"
	case url == "/credentials":
		schema = "CredentialsList"
		list, _ := fields["Credentials"].([]any)
		if len(list) == 0 {
			t.Fatalf("%s: empty list", url)
		}
		checkFields(t, doc, "Credentials", url, list[0].(map[string]any))
	}
	checkFields(t, doc, schema, url, fields)
}

func checkFields(t *testing.T, doc openAPIDoc, schema, url string, fields map[string]any) {
	t.Helper()
	s, ok := doc.Components.Schemas[schema]
	if !ok {
		t.Fatalf("no schema %s", schema)
	}
	var got, props, required []string
	for k := range fields {
		got = append(got, k)
	}
	for k := range s.Properties {
		props = append(props, k)
	}
	required = append(required, s.Required...)
	sort.Strings(got)
	sort.Strings(props)
	sort.Strings(required)
	if strings.Join(got, ",") != strings.Join(props, ",") || strings.Join(got, ",") != strings.Join(required, ",") {
		t.Errorf("%s: fields %v, schema %s has properties %v, required %v", url, got, schema, props, required)
	}
}
