// Package keypair writes an access key as the two named values CI systems
// keep it in (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), for the delivery
// targets (github, gitlab).
package keypair

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyrot/keyrot"
)

// The names used unless a target's names: override them.
const (
	DefaultIDName     = "AWS_ACCESS_KEY_ID"
	DefaultSecretName = "AWS_SECRET_ACCESS_KEY"
)

// Write stores creds with set: the secret access key under secretName,
// then the access key id under idName ("" for either: its default). No CI system updates two values at
// once: a job that starts in between gets a mismatched pair and fails to
// sign; run again, it gets the new key (the previous one stays active
// until the delivery is confirmed). Errors name the value, never its secret.
func Write(ctx context.Context, creds keyrot.Credentials, idName, secretName string, set func(ctx context.Context, name, value string) error) error {
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" {
		return errors.New("empty credentials")
	}
	if idName == "" {
		idName = DefaultIDName
	}
	if secretName == "" {
		secretName = DefaultSecretName
	}
	for _, v := range []struct{ name, value string }{
		{secretName, creds.SecretAccessKey},
		{idName, creds.AccessKeyID},
	} {
		if err := set(ctx, v.name, v.value); err != nil {
			return fmt.Errorf("set %s: %w", v.name, err)
		}
	}
	return nil
}
