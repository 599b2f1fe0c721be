package suggest_test

import (
	"testing"

	"github.com/keyrot/keyrot/internal/suggest"
)

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"key_craeted", "key_created", 1}, {"rotaton", "rotation", 1}, {"über", "uber", 1},
	} {
		if got := suggest.Distance(tt.a, tt.b); got != tt.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestClosest(t *testing.T) {
	kinds := []string{"key_created", "key_deactivated", "key_deleted", "rotation_failed", "rotation_recovered", "warning"}
	for _, tt := range []struct{ word, want string }{
		{"key_craeted", "key_created"},
		{"KEY_CREATED", "key_created"},
		{"warnign", "warning"},
		{"rotation_faild", "rotation_failed"},
		{"banana", ""},
		{"x", ""},
	} {
		if got := suggest.Closest(tt.word, kinds); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
	if got, want := suggest.Hint("rotate_evry", []string{"rotate_every", "resync"}), "; did you mean rotate_every?"; got != want {
		t.Errorf("Hint = %q, want %q", got, want)
	}
	if got := suggest.Hint("zzz", []string{"rotate_every"}); got != "" {
		t.Errorf("Hint = %q, want none", got)
	}
}
