package keyrot

import "regexp"

// secretShaped matches what could be an AWS secret access key: 40 characters
// of base64 standing alone. Access key ids (AKIA... 20 characters) do not match.
var secretShaped = regexp.MustCompile(`(^|[^A-Za-z0-9/+])[A-Za-z0-9/+]{40}($|[^A-Za-z0-9/+])`)

// RedactSecrets replaces anything shaped like a secret access key in s. Error
// text from AWS and from the network is passed through it before it is
// logged, emailed or returned, as a last line of defence.
func RedactSecrets(s string) string {
	return secretShaped.ReplaceAllString(s, "${1}[redacted]${2}")
}
