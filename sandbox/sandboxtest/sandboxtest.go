// Package sandboxtest runs the AWS sandbox in tests and points AWS SDK
// clients at it.
package sandboxtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/keyrot/keyrot/mock"
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

// Clock is the driven clock of every test, mock.Clock (it satisfies
// sandbox.Clock); the name stays for the sandbox's tests.
type Clock = mock.Clock

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return mock.NewClock(t) }

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
