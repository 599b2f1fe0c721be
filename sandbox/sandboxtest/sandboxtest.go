// Package sandboxtest runs the AWS sandbox in tests and points AWS SDK
// clients at it.
package sandboxtest

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot/sandbox"
)

// Start runs a sandbox on 127.0.0.1:0 for the test and closes it at cleanup.
func Start(t testing.TB, opts sandbox.Options) *sandbox.Server {
	t.Helper()
	s, err := sandbox.New(opts)
	if err != nil {
		t.Fatalf("sandboxtest: new sandbox: %v", err)
	}
	if err := s.Start(context.Background(), "127.0.0.1:0"); err != nil {
		t.Fatalf("sandboxtest: start sandbox: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("sandboxtest: close sandbox: %v", err)
		}
	})
	return s
}

// Config returns an aws.Config pointed at the sandbox (BaseEndpoint is
// s.URL()), in us-east-1, with the sandbox's admin credentials and a fast
// retryer: 3 attempts, backoff of at most 5ms, no client-side retry quota.
func Config(t testing.TB, s *sandbox.Server) aws.Config {
	t.Helper()
	id, secret := s.AdminCredentials()
	return UserConfig(t, s, id, secret)
}

// UserConfig is Config signed with the given access key, typically an IAM
// user's key created in the sandbox.
func UserConfig(t testing.TB, s *sandbox.Server, accessKeyID, secretAccessKey string) aws.Config {
	t.Helper()
	if s.URL() == "" {
		t.Fatalf("sandboxtest: sandbox is not started")
	}
	return EndpointConfig(s.URL(), accessKeyID, secretAccessKey)
}

// EndpointConfig is an aws.Config for any local AWS endpoint (the sandbox,
// moto_server): BaseEndpoint url, us-east-1, the given static key and a fast
// retryer (3 attempts, backoff of at most 5ms, no client-side retry quota).
func EndpointConfig(url, accessKeyID, secretAccessKey string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 5 * time.Millisecond
				o.RateLimiter = ratelimit.None
			})
		},
	}
}

// MemberConfig is Config in member account accountID of a sandbox started
// with MemberAccounts: its credentials come from sts:AssumeRole of the
// account's keyrot-member role by the admin (the management account),
// through the SDK's stscreds provider, refreshed before they expire.
// externalID is passed when not empty. The SDK's cache judges expiry by the
// wall clock while the sandbox judges it by its own Clock: a test that
// drives the sandbox's clock an hour on gets ExpiredToken from these
// credentials, and takes new ones with another MemberConfig.
func MemberConfig(t testing.TB, s *sandbox.Server, accountID, externalID string) aws.Config {
	t.Helper()
	admin := Config(t, s)
	provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(admin), sandbox.MemberRoleARN(accountID), func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = "sandboxtest"
		if externalID != "" {
			o.ExternalID = aws.String(externalID)
		}
	})
	cfg := admin.Copy()
	cfg.Credentials = aws.NewCredentialsCache(provider)
	return cfg
}

// SessionConfig is EndpointConfig with temporary credentials: an
// access key id, its secret and its session token.
func SessionConfig(url, accessKeyID, secretAccessKey, sessionToken string) aws.Config {
	cfg := EndpointConfig(url, accessKeyID, secretAccessKey)
	cfg.Credentials = credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, sessionToken)
	return cfg
}

// GetJSON GETs url, typically an admin endpoint such as
// s.URL()+"/_sandbox/accounts", and decodes its JSON answer into v. It
// fails the test on an error or a status other than 200.
func GetJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("sandboxtest: GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sandboxtest: GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("sandboxtest: GET %s: decode: %v", url, err)
	}
}

// Clock is a clock driven by the test. It satisfies sandbox.Clock and is
// safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var _ sandbox.Clock = (*Clock)(nil)

// CLIEnv is the environment for running the AWS CLI as a test's user: the
// process environment without any AWS_ setting, then the given key, region
// us-east-1, empty config files under dir, no pager, no instance metadata,
// and HOME at dir. Callers add --endpoint-url (the CLI 2.9 in CI ignores
// AWS_ENDPOINT_URL) and anything else they need.
func CLIEnv(dir, accessKeyID, secretAccessKey string, extra ...string) []string {
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, nil, 0o600) // a missing file reads the same: nothing
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_ACCESS_KEY_ID="+accessKeyID, "AWS_SECRET_ACCESS_KEY="+secretAccessKey,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_CONFIG_FILE="+empty, "AWS_SHARED_CREDENTIALS_FILE="+empty,
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true", "HOME="+dir)
	return append(env, extra...)
}
