package keyrot

import (
	"regexp"
	"strings"
)

// RedactedText replaces a secret in text that leaves the process.
const RedactedText = "[redacted]"

var (
	// apiKeyShaped matches a keyrot API key ("krt_" and base64url), wherever
	// it starts.
	apiKeyShaped = regexp.MustCompile(`krt_[A-Za-z0-9_-]{8,}`)
	// base64Run matches a run of the standard base64 alphabet, with '/'
	// and '+' also as they look URL-encoded (%2F, %2B) or JSON-escaped
	// (\/, \u002f), and its '=' padding.
	base64Run = regexp.MustCompile(`(?:[A-Za-z0-9+/]|%2[FfBb]|\\/|\\u002[Ff])+(?:=|%3[Dd]){0,2}`)
)

// secretLength is the length of an AWS secret access key; session tokens
// and other credentials in base64 are longer.
const secretLength = 40

// RedactSecrets replaces anything shaped like a secret in s: a keyrot API
// key; a run of 40 or more base64 characters with both upper- and
// lower-case letters (an AWS secret access key, a session token, however
// they are separated, quoted, JSON-escaped or URL-encoded). Access key ids
// (20 characters), ARNs, paths and hex hashes are left alone. It is the one
// redaction applied wherever text leaves the process: error text from AWS
// and the network before it is logged (logging redacts every error
// attribute), emailed, printed by the CLI, returned by the Lambda or an
// API error body, or used as a metric label; a last line of defence, since
// nothing should carry a secret there in the first place.
func RedactSecrets(s string) string {
	if len(s) < len("krt_")+8 {
		return s
	}
	s = apiKeyShaped.ReplaceAllLiteralString(s, RedactedText)
	return base64Run.ReplaceAllStringFunc(s, func(run string) string {
		if secretShaped(run) {
			return RedactedText
		}
		return run
	})
}

// secretShaped reports whether a base64 run looks like a random secret:
// long enough, and mixing cases as random base64 does (a hex hash or a
// lower-case path does not). Escapes count as the character they stand for.
func secretShaped(run string) bool {
	n, upper, lower := 0, false, false
	for i := 0; i < len(run); {
		switch c := run[i]; {
		case c == '=':
			i++ // padding
		case c == '%':
			if run[i+1] == '2' {
				n++ // %2F, %2B; %3D is padding
			}
			i += len("%2F")
		case strings.HasPrefix(run[i:], `\u`):
			n++
			i += len(`\u002F`)
		case c == '\\':
			n++
			i += len(`\/`)
		default:
			upper = upper || 'A' <= c && c <= 'Z'
			lower = lower || 'a' <= c && c <= 'z'
			n++
			i++
		}
	}
	return n >= secretLength && upper && lower
}

// RedactError returns err with its text through RedactSecrets, for an
// error about to be printed or returned out of the process; errors.Is and
// errors.As still see the chain. nil stays nil.
func RedactError(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{err}
}

type redactedError struct{ err error }

func (e redactedError) Error() string { return RedactSecrets(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }
