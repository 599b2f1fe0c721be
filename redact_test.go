package keyrot_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/keyrot/keyrot"
)

// Secrets of the shapes that could reach an error, a log line or an email.
const (
	secretA   = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	secretB   = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
	noDigits  = "wJalrXUtnFEMI/KaMDENG/bPxRfiCYEXAMPLEKEY" // 1 in 1000 random keys has no digit
	plusKey   = "AbCdEfGh+IjKlMnOp+QrStUvWx+Yz0123456789a"
	apiKey    = "krt_q3v9XbYp1Tz0dE4Jm8nR2sKf7LwHc6gUaViN5oQ"
	token     = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6Z9PZ7m2tQx0kT4bLwE9q8sY1nV3rA5cD7eF9gH1iJ2kL3mN4oP5qR6sT7uV8wX9yZ0aB1cD2eF3gH4iJ5kL6mN7o=="
	accessKey = "AKIAIOSFODNN7EXAMPLE"
	tempKey   = "ASIAIOSFODNN7EXAMPLE"
)

func TestRedactSecrets(t *testing.T) {
	r := keyrot.RedactedText
	tests := []struct{ name, in, want string }{
		{"plain error", "plain error", "plain error"},
		{"empty", "", ""},
		{"access key id", "key " + accessKey + " rejected", "key " + accessKey + " rejected"},
		{"temporary key id", "key " + tempKey + " expired", "key " + tempKey + " expired"},
		{"secret alone", secretA, r},
		{"secret in a sentence", "secret " + secretA + " leaked", "secret " + r + " leaked"},
		{"after =", "x=" + secretA + ",", "x=" + r + ","},
		{"two, space", secretA + " " + secretB, r + " " + r},
		{"two, comma", secretA + "," + secretB, r + "," + r},
		{"two, newline", secretA + "\n" + secretB, r + "\n" + r},
		{"two, quoted", `"` + secretA + `" '` + secretB + `'`, `"` + r + `" '` + r + `'`},
		{"three, tab", secretA + "\t" + secretB + "\t" + plusKey, r + "\t" + r + "\t" + r},
		{"no digits", "k " + noDigits, "k " + r},
		{"with plus", "k " + plusKey, "k " + r},
		{"json", `{"AccessKeyId":"` + accessKey + `","SecretAccessKey":"` + secretA + `"}`, `{"AccessKeyId":"` + accessKey + `","SecretAccessKey":"` + r + `"}`},
		{"json escaped slashes", `{"SecretAccessKey":"` + strings.ReplaceAll(secretA, "/", `\/`) + `"}`, `{"SecretAccessKey":"` + r + `"}`},
		{"json unicode slashes", `"` + strings.ReplaceAll(secretA, "/", `\u002f`) + `"`, `"` + r + `"`},
		{"url-encoded", "https://x/?secret=" + url.QueryEscape(secretA) + "&next=1", "https://x/?secret=" + r + "&next=1"},
		{"url-encoded plus", "s=" + url.QueryEscape(plusKey), "s=" + r},
		{"form body", "AccessKeyId=" + accessKey + "&SecretAccessKey=" + url.QueryEscape(secretB), "AccessKeyId=" + accessKey + "&SecretAccessKey=" + r},
		{"api key", "bad key " + apiKey + " presented", "bad key " + r + " presented"},
		{"api key glued", "user/" + apiKey, "user/" + r},
		{"api key in json", `{"key":"` + apiKey + `"}`, `{"key":"` + r + `"}`},
		{"two api keys", apiKey + " " + apiKey, r + " " + r},
		{"session token", "X-Amz-Security-Token: " + token, "X-Amz-Security-Token: " + r},
		{"session token url-encoded", "X-Amz-Security-Token=" + url.QueryEscape(token) + "&X", "X-Amz-Security-Token=" + r + "&X"},
		{"key and secret", accessKey + ":" + secretA, accessKey + ":" + r},
		{"wrapped error", `iam: create access key for user "ci-bot": api error: ` + secretA + `: denied`, `iam: create access key for user "ci-bot": api error: ` + r + `: denied`},
		// Not secrets.
		{"arn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:iam-key-rotation/ci-bot-AbCdEf", "arn:aws:secretsmanager:us-east-1:123456789012:secret:iam-key-rotation/ci-bot-AbCdEf"},
		{"sha1 hex", "commit 0123456789abcdef0123456789abcdef01234567", "commit 0123456789abcdef0123456789abcdef01234567"},
		{"sha256 hex", "sha256:" + strings.Repeat("ab12", 16), "sha256:" + strings.Repeat("ab12", 16)},
		{"lower-case path", "/usr/local/share/keyrot/templates/default/mail", "/usr/local/share/keyrot/templates/default/mail"},
		{"39 characters", "k " + secretA[1:], "k " + secretA[1:]},
		{"credential scope", "Credential=" + accessKey + "/20261202/us-east-1/iam/aws4_request", "Credential=" + accessKey + "/20261202/us-east-1/iam/aws4_request"},
		{"krt_ alone", "the krt_ prefix", "the krt_ prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keyrot.RedactSecrets(tt.in); got != tt.want {
				t.Errorf("RedactSecrets(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestRedactSecretsRandomKeys: random secret access keys and API keys,
// several in a row with any separator, never survive redaction.
func TestRedactSecretsRandomKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seps := []string{" ", ",", "\n", `"`, "'", ":", "=", "&", ";", "\t", `", "`, "%20", "(", ")"}
	randomBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	for range 2000 {
		var secrets []string
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			s := base64.StdEncoding.EncodeToString(randomBytes(30)) // 40 characters, as AWS's
			switch rng.IntN(4) {
			case 0:
				s = "krt_" + base64.RawURLEncoding.EncodeToString(randomBytes(32))
			case 1:
				s = url.QueryEscape(s)
			}
			secrets = append(secrets, s)
			b.WriteString(seps[rng.IntN(len(seps))] + s)
		}
		b.WriteString(seps[rng.IntN(len(seps))])
		got := keyrot.RedactSecrets(b.String())
		for _, s := range secrets {
			if strings.Contains(got, s) {
				t.Fatalf("RedactSecrets(%q) = %q: %q survived", b.String(), got, s)
			}
		}
	}
}

func TestRedactError(t *testing.T) {
	if keyrot.RedactError(nil) != nil {
		t.Fatal("RedactError(nil) is not nil")
	}
	err := keyrot.RedactError(fmt.Errorf("rotate %s: %w", secretA, keyrot.ErrUserNotFound))
	if got, want := err.Error(), "rotate "+keyrot.RedactedText+": "+keyrot.ErrUserNotFound.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, keyrot.ErrUserNotFound) {
		t.Error("the chain is lost")
	}
}
