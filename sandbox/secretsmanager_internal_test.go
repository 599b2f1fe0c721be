package sandbox

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyrot/keyrot/mock"
)

var smAdmin = principal{Admin: true, ARN: "arn:aws:iam::123456789012:root"}

func smDo(t *testing.T, m *secretsManager, op, body string) map[string]any {
	t.Helper()
	resp, err := m.handle(smAdmin, op, []byte(body))
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	b, jerr := json.Marshal(resp)
	if jerr != nil {
		t.Fatalf("%s: marshal: %v", op, jerr)
	}
	var out map[string]any
	if jerr := json.Unmarshal(b, &out); jerr != nil {
		t.Fatalf("%s: unmarshal: %v", op, jerr)
	}
	return out
}

func TestSMChangedAndSnapshot(t *testing.T) {
	clock := mock.NewClock(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
	changes := 0
	m := newSecretsManager(clock, "123456789012", "eu-west-1", 42, func() { changes++ })
	created := smDo(t, m, "CreateSecret", `{"Name":"a/b","SecretString":"s1","Tags":[{"Key":"k","Value":"v"}]}`)
	smDo(t, m, "PutSecretValue", `{"SecretId":"a/b","SecretString":"s2"}`)
	smDo(t, m, "PutResourcePolicy", `{"SecretId":"a/b","ResourcePolicy":"{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"*\"}}"}`)
	smDo(t, m, "CreateSecret", `{"Name":"gone","SecretString":"x"}`)
	smDo(t, m, "DeleteSecret", `{"SecretId":"gone","RecoveryWindowInDays":7}`)
	if changes != 5 {
		t.Errorf("changed called %d times after 5 writes, want 5", changes)
	}
	if !strings.HasPrefix(created["ARN"].(string), "arn:aws:secretsmanager:eu-west-1:123456789012:secret:a/b-") {
		t.Errorf("ARN = %v", created["ARN"])
	}
	// Reads only count as a change when the day of last access moves.
	for range 10 {
		smDo(t, m, "GetSecretValue", `{"SecretId":"a/b"}`)
	}
	if changes != 6 {
		t.Errorf("changed called %d times after 10 reads, want 6", changes)
	}
	clock.Advance(24 * time.Hour)
	smDo(t, m, "GetSecretValue", `{"SecretId":"a/b"}`)
	if changes != 7 {
		t.Errorf("changed called %d times after a read the next day, want 7", changes)
	}

	snap, err := m.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	m2 := newSecretsManager(clock, "123456789012", "eu-west-1", 42, nil)
	if err := m2.restore(snap); err != nil {
		t.Fatal(err)
	}
	snap2, err := m2.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if string(snap) != string(snap2) {
		t.Errorf("snapshot after restore differs:\n%s\n%s", snap, snap2)
	}
	got := smDo(t, m2, "GetSecretValue", `{"SecretId":"`+created["ARN"].(string)+`"}`)
	if got["SecretString"] != "s2" {
		t.Errorf("restored value = %v", got["SecretString"])
	}
	d := smDo(t, m2, "DescribeSecret", `{"SecretId":"gone"}`)
	if d["DeletedDate"] == nil {
		t.Errorf("restored deleted secret lost its DeletedDate: %v", d)
	}
	// The restored policy is enforced.
	user := principal{ARN: "arn:aws:iam::123456789012:user/u", UserName: "u"}
	if _, err := m2.handle(user, "GetSecretValue", []byte(`{"SecretId":"a/b"}`)); err != nil {
		t.Errorf("user read with restored public policy: %v", err)
	}
	if err := m2.restore(json.RawMessage(`{"Secrets":[`)); err == nil {
		t.Error("restore of bad JSON succeeded")
	}
}

func TestSMTimestampsAreEpochSeconds(t *testing.T) {
	clock := mock.NewClock(time.Date(2025, 1, 1, 12, 0, 0, 250e6, time.UTC))
	m := newSecretsManager(clock, "123456789012", "us-east-1", 1, nil)
	smDo(t, m, "CreateSecret", `{"Name":"t","SecretString":"v"}`)
	resp, _ := m.handle(smAdmin, "DescribeSecret", []byte(`{"SecretId":"t"}`))
	b, _ := json.Marshal(resp)
	if want := fmt.Sprintf(`"CreatedDate":%d.250`, clock.Now().Unix()); !strings.Contains(string(b), want) {
		t.Errorf("describe = %s, want it to contain %s", b, want)
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything", true},
		{"secretsmanager:get*", "secretsmanager:getsecretvalue", true},
		{"secretsmanager:get*", "secretsmanager:describesecret", false},
		{"secretsmanager:*secret*", "secretsmanager:describesecret", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"arn:aws:secretsmanager:*:*:secret:x-*", "arn:aws:secretsmanager:us-east-1:1:secret:x-AbC123", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	}
	for _, tt := range tests {
		if got := wildcardMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := map[string][]string{
		"credsDatabase#892":      {"creds", "database", "892"},
		"iam-key-rotation/alice": {"iam", "key", "rotation", "alice"},
		"My_Secret":              {"my", "secret"},
		"svc42x":                 {"svc", "42", "x"},
		"":                       nil,
	}
	for in, want := range tests {
		if got := splitWords(in); !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSecretsManagerHandle(f *testing.F) {
	for _, s := range []string{`{"Name":"a","SecretString":"x"}`, `{"SecretId":"a"}`, `{"Filters":[{"Key":"all","Values":["!a"]}]}`, `{`, `[]`, `null`} {
		f.Add("CreateSecret", s)
		f.Add("ListSecrets", s)
	}
	f.Fuzz(func(t *testing.T, op, body string) {
		m := newSecretsManager(nil, "123456789012", "us-east-1", 1, nil)
		_, _ = m.handle(smAdmin, "CreateSecret", []byte(`{"Name":"a","SecretString":"x"}`))
		resp, err := m.handle(smAdmin, op, []byte(body))
		if err == nil {
			if _, jerr := json.Marshal(resp); jerr != nil {
				t.Fatalf("marshal response: %v", jerr)
			}
		} else if err.Status < 400 || err.Status >= 500 {
			t.Fatalf("status %d for %v", err.Status, err)
		}
	})
}
