package keyrot_test

import (
	"testing"

	"github.com/keyrot/keyrot"
)

func TestRedactSecrets(t *testing.T) {
	secret := "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	tests := []struct{ in, want string }{
		{"plain error", "plain error"},
		{"key AKIAIOSFODNN7EXAMPLE rejected", "key AKIAIOSFODNN7EXAMPLE rejected"},
		{"secret " + secret + " leaked", "secret [redacted] leaked"},
		{secret, "[redacted]"},
		{"x=" + secret + ",", "x=[redacted],"},
	}
	for _, tt := range tests {
		if got := keyrot.RedactSecrets(tt.in); got != tt.want {
			t.Errorf("RedactSecrets(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
