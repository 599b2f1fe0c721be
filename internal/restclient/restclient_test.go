package restclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyrot/keyrot/internal/restclient"
)

func TestErrorsCarryNeitherBodyNorSecretNorQuery(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte(`{"message":"value ` + secret + ` is invalid"}`))
	}))
	defer srv.Close()
	c := &restclient.Client{}
	err := c.Do(context.Background(), http.MethodPut, srv.URL+"/v/KEY?token=abc", map[string]string{"value": secret}, nil)
	if !restclient.IsStatus(err, http.StatusUnprocessableEntity) || restclient.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("Do = %v, want a 422 StatusError", err)
	}
	if msg := err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, "token=abc") || !strings.Contains(msg, "[redacted] is invalid") {
		t.Errorf("error %q", msg)
	}
}

func TestWithKeepsTheOriginal(t *testing.T) {
	base := &restclient.Client{Header: http.Header{"A": {"1"}}}
	c := base.With(http.Header{"B": {"2"}})
	if c.Header.Get("A") != "1" || c.Header.Get("B") != "2" || base.Header.Get("B") != "" {
		t.Errorf("With: %v, base %v", c.Header, base.Header)
	}
	if (*restclient.Client)(nil).With(nil).Header == nil {
		t.Error("nil client: no header map")
	}
	if _, err := restclient.BaseURL("gitlab.com", "https://HOST/api/v4"); err == nil {
		t.Error("a URL without a scheme accepted")
	}
}
