package http_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keyrot/keyrot"
	keyrothttp "github.com/keyrot/keyrot/http"
)

// The accounts of newAccountsEnv: alice is managed in both, bob in one,
// ci-deploy in the other.
const (
	accountA = "100000000001"
	accountB = "100000000002"
)

// newAccountsEnv is an API serving two accounts' keys; with notReady, the
// second account's cache has not loaded yet.
func newAccountsEnv(t *testing.T, notReady bool, opts ...envOption) *env {
	t.Helper()
	caches := keyrothttp.NewAccountCaches()
	e := newEnvServer(t, nil, []keyrothttp.ServerOption{keyrothttp.WithAccounts(caches)}, opts...)
	a := keyrothttp.NewCache(nil, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(e.clock))
	b := keyrothttp.NewCache(nil, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(e.clock))
	if notReady {
		b = keyrothttp.NewCache(&fakeSource{}, keyrot.DefaultPolicy(), keyrothttp.WithCacheClock(e.clock))
	}
	f := fixtures()
	a.Publish(f[0])
	a.Publish(f[1])
	other := f[0]
	other.AccessKeyID = "AKIAALICEB0000000009"
	b.Publish(other)
	b.Publish(f[2])
	caches.Add(accountA, a)
	caches.Add(accountB, b)
	return e
}

func TestAccountRoutes(t *testing.T) {
	e := newAccountsEnv(t, false)
	admin, ci, reader := xkey(e.keys.admin), xkey(e.keys.ci), xkey(e.keys.reader)
	for _, tc := range []struct {
		path, key string
		status    int
		keyID     string
	}{
		{"/credentials/" + accountA + "/alice", admin, 200, "AKIAALICE00000000001"},
		{"/credentials/" + accountB + "/alice", admin, 200, "AKIAALICEB0000000009"},
		{"/credentials/bob", admin, 200, "AKIABOB0000000000002"},    // one account holds bob
		{"/credentials/ci-deploy", ci, 200, "AKIACIDEPLOY00000003"}, // and ci-deploy
		{"/credentials/alice", admin, 409, ""},                      // two hold alice
		{"/credentials/" + accountB + "/bob", admin, 404, ""},       // not in that account
		{"/credentials/999999999999/alice", admin, 404, ""},         // not an account keyrot works in
		{"/credentials/12345/alice", admin, 400, ""},                // not an account id
		{"/credentials/" + accountA + "/bob", reader, 403, ""},      // scope first, in every account
		{"/credentials/" + accountA + "/alice?format=env", reader, 200, "AKIAALICE00000000001"},
	} {
		r := e.do(t, "GET", tc.path, tc.key)
		if r.status != tc.status || !strings.Contains(r.body, tc.keyID) {
			t.Errorf("GET %s: %d %s, want %d with %s", tc.path, r.status, r.body, tc.status, tc.keyID)
		}
		if tc.status == 409 && (!strings.Contains(r.body, accountA) || !strings.Contains(r.body, accountB)) {
			t.Errorf("409 does not name the candidate accounts: %s", r.body)
		}
	}

	var list struct{ Credentials []map[string]string }
	r := e.do(t, "GET", "/credentials", admin)
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || r.status != 200 {
		t.Fatalf("list: %d %s: %v", r.status, r.body, err)
	}
	var got []string
	for _, c := range list.Credentials {
		got = append(got, c["Account"]+"/"+c["UserName"])
	}
	if want := accountA + "/alice," + accountA + "/bob," + accountB + "/alice," + accountB + "/ci-deploy"; strings.Join(got, ",") != want {
		t.Errorf("list = %v, want %s", got, want)
	}
	// The audit names the account of each read.
	if !strings.Contains(e.logs.String(), `"user":"`+accountB+`/ci-deploy"`) || !strings.Contains(e.logs.String(), `"user":"`+accountA+`/bob","key_id":"AKIABOB`) {
		t.Errorf("the list's audit records do not name the account:\n%s", e.logs)
	}

	// Without accounts the account route is not there.
	single := newEnv(t)
	if r := single.do(t, "GET", "/credentials/"+accountA+"/alice", xkey(single.keys.admin)); r.status != 404 {
		t.Errorf("single account: %d %s, want 404", r.status, r.body)
	}
}
