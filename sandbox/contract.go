package sandbox

import (
	"encoding/json"
	"fmt"
	"time"
)

// Clock tells the sandbox what time it is. Tests inject a driven clock so that
// days of rotations run in seconds; production code uses the wall clock.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// apiError is an AWS-shaped error. Each protocol renders it its own way: IAM and
// STS as query-protocol XML, Secrets Manager as JSON 1.1 with __type, SES v2 as
// REST JSON with the X-Amzn-Errortype header.
type apiError struct {
	Status  int    // HTTP status, e.g. 400, 404, 409
	Code    string // AWS error code, e.g. "NoSuchEntity", "ResourceNotFoundException"
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// principal is who signed a request, as the core dispatcher authenticated it.
type principal struct {
	AccessKeyID string
	// Admin: signed with the sandbox's admin key, or by a role session,
	// which has admin rights in its account: may do anything there.
	Admin    bool
	UserName string // IAM user that owns the key (empty for admin)
	ARN      string // arn:aws:iam::<account>:user/<path><name>, the root ARN for admin, the assumed-role ARN for a session
	Account  string // the account the call runs in
	Role     string // for a role session: the role's name
	Session  string // for a role session: its name
}

// persistent is implemented by each service so the core can save and restore
// the sandbox's state (--data DIR).
type persistent interface {
	snapshot() (json.RawMessage, error)
	restore(json.RawMessage) error
}
