package iam

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/keyrot/keyrot"
)

var _ keyrot.KeyVerifier = (*Verifier)(nil)

// Verifier proves a new key works by calling sts:GetCallerIdentity signed with
// it. That call needs no IAM permission, so it tests the key and nothing else.
type Verifier struct {
	cfg aws.Config
}

// NewVerifier returns a Verifier that builds its STS clients from cfg
// (region, endpoint, HTTP client), replacing only the credentials. The
// clients share one HTTP client: one each would keep a transport and its
// idle connection alive per recent rotation (thousands in a storm). A
// client per key still gets its own signer, whose cache of signing keys
// goes by access key id alone.
func NewVerifier(cfg aws.Config) *Verifier {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = awshttp.NewBuildableClient()
	}
	return &Verifier{cfg: cfg}
}

// VerifyKey returns nil if STS accepts creds and says they belong to the
// expected user, and an error wrapping keyrot.ErrKeyRejected if STS rejects
// them (not yet propagated, inactive, deleted).
func (v *Verifier) VerifyKey(ctx context.Context, creds keyrot.Credentials) error {
	client := sts.NewFromConfig(v.cfg, func(o *sts.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, "")
		// The caller retries through propagation delay on its own clock.
		o.RetryMaxAttempts = 1
	})
	out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		switch errorCode(err) {
		case "InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken":
			return fmt.Errorf("sts: key %s: %w (%w)", creds.AccessKeyID, keyrot.ErrKeyRejected, err)
		}
		return fmt.Errorf("sts: get caller identity with key %s: %w", creds.AccessKeyID, err)
	}
	if arn := aws.ToString(out.Arn); creds.UserName != "" && !hasUserSuffix(arn, creds.UserName) {
		return fmt.Errorf("sts: key %s belongs to %s, not user %q: %w", creds.AccessKeyID, arn, creds.UserName, keyrot.ErrKeyRejected)
	}
	return nil
}

// hasUserSuffix reports whether an IAM user ARN (arn:aws:iam::1:user/path/name) names user.
func hasUserSuffix(arn, user string) bool {
	return len(arn) > len(user) && arn[len(arn)-len(user)-1] == '/' && arn[len(arn)-len(user):] == user
}
