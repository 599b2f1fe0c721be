package keypair_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/internal/keypair"
)

func TestWriteSecretFirstAndStopsAtAFailure(t *testing.T) {
	creds := keyrot.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
	var names []string
	set := func(_ context.Context, name, _ string) error { names = append(names, name); return nil }
	if err := keypair.Write(context.Background(), creds, "ID", "SECRET", set); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"SECRET", "ID"}) {
		t.Errorf("written %q, want the secret first", names)
	}
	failing := func(context.Context, string, string) error { return errors.New("401 Unauthorized") }
	err := keypair.Write(context.Background(), creds, "ID", "SECRET", failing)
	if err == nil || err.Error() != "set SECRET: 401 Unauthorized" || strings.Contains(err.Error(), creds.SecretAccessKey) {
		t.Errorf("Write = %v", err)
	}
	if err := keypair.Write(context.Background(), keyrot.Credentials{AccessKeyID: "AKIA"}, "ID", "SECRET", set); err == nil {
		t.Error("credentials without a secret written")
	}
}
