package main

import (
	"context"
	"testing"

	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/internal/testkit"
	"github.com/keyrot/keyrot/sandbox"
	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// TestSharedConfigCases: the API function's environment is checked as keyrot serve
// checks its config: every shared bad input the environment can carry
// fails init with a config error naming the field (what main prints, and
// every invocation then fails with), and every good one builds.
func TestSharedConfigCases(t *testing.T) {
	aws := sandboxtest.Config(t, sandboxtest.Start(t, sandbox.Options{}))
	testkit.RunEnvConfigCases(t, func(lookup func(string) (string, bool)) error {
		_, err := newHandler(context.Background(), options{LookupEnv: lookup, Stdout: &testkit.Buffer{}, AWS: &aws})
		return err
	}, config.IsConfigError)
}
