package keyrot

import "errors"

// Sentinel errors for expected states. Adapters wrap them with context
// (fmt.Errorf("...: %w", ErrUserNotFound)) so callers test with errors.Is.
var (
	// ErrUserNotFound: the IAM user does not exist (IAM NoSuchEntity on a user).
	ErrUserNotFound = errors.New("iam user not found")
	// ErrKeyNotFound: the access key does not exist (IAM NoSuchEntity on a key).
	ErrKeyNotFound = errors.New("access key not found")
	// ErrKeyLimit: the user already has two access keys (IAM LimitExceeded).
	ErrKeyLimit = errors.New("user already has two access keys")
	// ErrSecretNotFound: the secret, or the version asked for, does not exist.
	ErrSecretNotFound = errors.New("secret not found")
	// ErrConflict: another writer got there first (a ClientRequestToken reused
	// with another value): another keyrot is rotating the same user.
	ErrConflict = errors.New("conflicting concurrent rotation")
	// ErrKeyRejected: AWS rejected a key (not yet propagated, inactive, or wrong).
	ErrKeyRejected = errors.New("access key rejected by AWS")
	// ErrUserNotManaged: a user asked for by name (RunOptions.Users) is not
	// one the configuration selects.
	ErrUserNotManaged = errors.New("not managed by this configuration")
)

// IsThrottle reports whether err is AWS throttling (after the SDK's own
// retries gave up): a reason to try again later, never a failure to report
// by itself. It reads the error code the way smithy.APIError gives it,
// without importing the SDK into the domain.
func IsThrottle(err error) bool {
	var coded interface{ ErrorCode() string }
	if !errors.As(err, &coded) {
		return false
	}
	switch coded.ErrorCode() {
	case "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
		"RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown":
		return true
	}
	return false
}
