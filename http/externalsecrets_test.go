package http_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"text/template"

	"github.com/PaesslerAG/jsonpath"
	"go.yaml.in/yaml/v3"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
	"github.com/keyrot/keyrot/mock"
)

// esoManifests are the Kubernetes objects of docs/external-secrets.md, by kind.
type esoManifests struct {
	apiKeySecret struct {
		Metadata struct {
			Name   string
			Labels map[string]string
		}
		StringData map[string]string `yaml:"stringData"`
	}
	store struct {
		Spec struct {
			Provider struct {
				Webhook struct {
					URL     string `yaml:"url"`
					Method  string
					Headers map[string]string
					Result  struct {
						JSONPath string `yaml:"jsonPath"`
					}
					Secrets []struct {
						Name      string
						SecretRef struct{ Name string } `yaml:"secretRef"`
					}
				}
			}
		}
	}
	externalSecret struct {
		Spec struct {
			Target struct {
				Template struct {
					EngineVersion string `yaml:"engineVersion"`
					Data          map[string]string
				}
			}
			DataFrom []struct {
				Extract struct{ Key string }
			} `yaml:"dataFrom"`
		}
	}
}

// readESORecipe parses the YAML block of docs/external-secrets.md.
func readESORecipe(t *testing.T) esoManifests {
	t.Helper()
	doc, err := os.ReadFile("../docs/external-secrets.md")
	if err != nil {
		t.Fatal(err)
	}
	var m esoManifests
	seen := map[string]bool{}
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block = block[:strings.Index(block, "```")]
		dec := yaml.NewDecoder(strings.NewReader(block))
		for {
			var node yaml.Node
			if err := dec.Decode(&node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("docs/external-secrets.md: %v", err)
			}
			var head struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string
			}
			if err := node.Decode(&head); err != nil {
				t.Fatal(err)
			}
			var target any
			switch head.Kind {
			case "Secret":
				target = &m.apiKeySecret
			case "SecretStore":
				target = &m.store
			case "ExternalSecret":
				target = &m.externalSecret
			default:
				t.Fatalf("docs/external-secrets.md: unexpected kind %q", head.Kind)
			}
			if head.Kind != "Secret" && head.APIVersion != "external-secrets.io/v1" {
				t.Errorf("%s: apiVersion %q, want external-secrets.io/v1", head.Kind, head.APIVersion)
			}
			if err := node.Decode(target); err != nil {
				t.Fatalf("%s: %v", head.Kind, err)
			}
			seen[head.Kind] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("docs/external-secrets.md has %v, want a Secret, a SecretStore and an ExternalSecret", seen)
	}
	return m
}

// render executes a webhook template as ESO does: Go's text/template over
// a map of named string maps.
func render(t *testing.T, name, tmpl string, data map[string]map[string]string) string {
	t.Helper()
	tp, err := template.New(name).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		t.Fatalf("%s template %q: %v", name, tmpl, err)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, data); err != nil {
		t.Fatalf("%s template %q: %v", name, tmpl, err)
	}
	return b.String()
}

// TestExternalSecretsWebhookRecipe makes the request external-secrets'
// Webhook provider makes from docs/external-secrets.md against keyrot's
// API handler, and turns the answer into the Kubernetes Secret's data the
// way dataFrom.extract and the target template do.
func TestExternalSecretsWebhookRecipe(t *testing.T) {
	m := readESORecipe(t)
	wh := m.store.Spec.Provider.Webhook
	if got := m.apiKeySecret.Metadata.Labels["external-secrets.io/type"]; got != "webhook" {
		t.Errorf("the API key's Secret lacks the label external-secrets.io/type: webhook (ESO refuses it): %q", got)
	}
	if len(wh.Secrets) != 1 || wh.Secrets[0].SecretRef.Name != m.apiKeySecret.Metadata.Name {
		t.Fatalf("the store's secrets %+v do not name the API key's Secret %q", wh.Secrets, m.apiKeySecret.Metadata.Name)
	}
	if len(m.externalSecret.Spec.DataFrom) != 1 || m.externalSecret.Spec.Target.Template.EngineVersion != "v2" {
		t.Fatalf("ExternalSecret: want one dataFrom.extract and a v2 template: %+v", m.externalSecret.Spec)
	}
	docUser := m.externalSecret.Spec.DataFrom[0].Extract.Key

	// keyrot's API, with a key scoped like the recipe's, serving the
	// recipe's user and one whose name needs escaping in a URL.
	apiKey, hash, _ := keyrothttp.GenerateAPIKey()
	cache := keyrothttp.NewCache(nil, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(mock.NewClock(t0)))
	users := map[string]keyrot.Credentials{}
	for i, user := range []string{docUser, "deploy+ci@prod"} {
		c := keyrot.Credentials{UserName: user, AccessKeyID: fmt.Sprintf("AKIAESO%013d", i), SecretAccessKey: fmt.Sprintf("esoSecret/%d+wJalrXUtnFEMI/K7MDENG/bPxRfiCY", i), CreateDate: t0, CurrentSince: t0, Generation: 1}
		cache.Publish(c)
		users[user] = c
	}
	srv, err := keyrothttp.NewServer(keyrothttp.ServerConfig{Keys: []keyrothttp.APIKey{{Name: "k8s-team-a", Hash: hash, Users: []string{docUser, "deploy+*"}}}}, cache)
	if err != nil {
		t.Fatal(err)
	}
	var seen *http.Request
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Clone(r.Context())
		srv.Handler().ServeHTTP(w, r)
	}))
	defer api.Close()

	for user, want := range users {
		t.Run(user, func(t *testing.T) {
			// ESO's template data: remoteRef (query-escaped for the URL, raw
			// for headers and the JSON path) and each listed Secret's data,
			// here the API key the user put in the Secret.
			secretData := map[string]string{}
			for k, v := range m.apiKeySecret.StringData {
				secretData[k] = v
			}
			secretData["apiKey"] = apiKey
			ref := func(escape func(string) string) map[string]map[string]string {
				return map[string]map[string]string{
					"remoteRef":        {"key": escape(user), "version": "", "property": "", "namespace": "team-a"},
					wh.Secrets[0].Name: secretData,
				}
			}
			escaped, raw := ref(url.QueryEscape), ref(func(s string) string { return s })

			rendered := render(t, "url", wh.URL, escaped)
			u, err := url.Parse(rendered)
			if err != nil || u.Scheme != "https" {
				t.Fatalf("url %q: %v (the recipe must use https)", rendered, err)
			}
			// The documented host stands for keyrot's; the path and query are ESO's.
			target := api.URL + u.RequestURI()
			method := wh.Method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, target, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range wh.Headers {
				req.Header.Add(k, render(t, "header "+k, v, raw))
			}
			resp, err := api.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode >= 300 {
				t.Fatalf("%s %s: %d %s", method, req.URL, resp.StatusCode, body)
			}
			if seen.Method != http.MethodGet || seen.URL.Path != "/credentials/"+user || seen.Header.Get("X-API-Key") != apiKey {
				t.Errorf("keyrot saw %s %s (key sent: %v)", seen.Method, seen.URL.Path, seen.Header.Get("X-API-Key") == apiKey)
			}

			// GetSecretMap: parse, apply the (templated) JSON path with the
			// library ESO uses, take a string as JSON, then every key of the
			// object as a string.
			var doc any
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatal(err)
			}
			path := render(t, "jsonPath", wh.Result.JSONPath, raw)
			result, err := jsonpath.Get(path, doc)
			if err != nil {
				t.Fatalf("jsonpath %q: %v", path, err)
			}
			if s, ok := result.(string); ok {
				if err := json.Unmarshal([]byte(s), &result); err != nil {
					t.Fatal(err)
				}
			}
			obj, ok := result.(map[string]any)
			if !ok {
				t.Fatalf("jsonpath %q gives %T, want an object", path, result)
			}
			data := map[string]string{}
			for k, v := range obj {
				s, ok := v.(string)
				if !ok {
					t.Fatalf("%s is %T, want a string", k, v)
				}
				data[k] = s
			}
			// The per-property paths the page warns against resolve too.
			for prop, wantValue := range map[string]string{"AccessKeyId": want.AccessKeyID, "SecretAccessKey": want.SecretAccessKey} {
				if v, err := jsonpath.Get("$."+prop, doc); err != nil || v != wantValue {
					t.Errorf("jsonpath $.%s = %v, %v", prop, v, err)
				}
			}

			// The target template, over the extracted keys.
			out := map[string]string{}
			for k, tmpl := range m.externalSecret.Spec.Target.Template.Data {
				tp, err := template.New(k).Option("missingkey=error").Parse(tmpl)
				if err != nil {
					t.Fatal(err)
				}
				var b bytes.Buffer
				if err := tp.Execute(&b, data); err != nil {
					t.Fatalf("target template %s: %v", k, err)
				}
				out[k] = b.String()
			}
			if out["AWS_ACCESS_KEY_ID"] != want.AccessKeyID || out["AWS_SECRET_ACCESS_KEY"] != want.SecretAccessKey {
				t.Errorf("the Secret would hold %s / a secret of %d characters, want %s and its secret", out["AWS_ACCESS_KEY_ID"], len(out["AWS_SECRET_ACCESS_KEY"]), want.AccessKeyID)
			}
			if exp := want.Annotate(t0).Expiration.UTC().Format("2006-01-02T15:04:05Z07:00"); out["AWS_CREDENTIAL_EXPIRATION"] != exp {
				t.Errorf("AWS_CREDENTIAL_EXPIRATION = %q, want %q", out["AWS_CREDENTIAL_EXPIRATION"], exp)
			}
		})
	}
}
