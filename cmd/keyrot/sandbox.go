package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"time"

	"github.com/keyrot/keyrot/internal/config"
	"github.com/keyrot/keyrot/sandbox"
)

// sandboxFlags are the sandbox's settings, shared by `keyrot sandbox` and `keyrot dev`.
type sandboxFlags struct {
	listen, data, keyID, secret, region, account string
	seed                                         int64
	members                                      int
	externalID                                   string
	throttleRate, errorRate, sesRate             float64
	latency, propagation                         time.Duration
}

// addSandboxFlags registers the sandbox's flags on fs.
func (m *Main) addSandboxFlags(fs *flag.FlagSet, defaultPropagation time.Duration) *sandboxFlags {
	f := &sandboxFlags{}
	envOr := m.envOr
	fs.StringVar(&f.listen, "listen", envOr("KEYROT_SANDBOX_LISTEN", "127.0.0.1:4566"), "sandbox address, loopback; port 0 takes any free one (env KEYROT_SANDBOX_LISTEN)")
	fs.StringVar(&f.data, "data", "", "directory to keep the sandbox's state across restarts (default: memory only)")
	fs.StringVar(&f.keyID, "access-key-id", envOr("KEYROT_SANDBOX_ACCESS_KEY_ID", "test"), "admin access key id the sandbox accepts (env KEYROT_SANDBOX_ACCESS_KEY_ID)")
	fs.StringVar(&f.secret, "secret-access-key", envOr("KEYROT_SANDBOX_SECRET_ACCESS_KEY", "test"), "admin secret access key (env KEYROT_SANDBOX_SECRET_ACCESS_KEY)")
	fs.StringVar(&f.region, "region", "us-east-1", "region the sandbox reports")
	fs.StringVar(&f.account, "account-id", "123456789012", "account id in ARNs (the management account with --accounts)")
	fs.IntVar(&f.members, "accounts", 0, "member accounts of an Organization to serve (100000000001, ...), each with the role keyrot-member the admin may assume; 0: one account")
	fs.StringVar(&f.externalID, "external-id", "", "with --accounts: the sts:ExternalId every member role requires (default: none)")
	fs.Int64Var(&f.seed, "seed", 1, "seed for generated ids and fault decisions")
	fs.Float64Var(&f.throttleRate, "throttle-rate", 0, "fraction of AWS calls answered with throttling")
	fs.Float64Var(&f.errorRate, "error-rate", 0, "fraction of AWS calls answered with a 5xx")
	fs.DurationVar(&f.latency, "latency", 0, "latency added to every AWS call")
	fs.Float64Var(&f.sesRate, "ses-rate", 1, "SES messages per second allowed, as an SES sandbox account (0: unlimited)")
	fs.DurationVar(&f.propagation, "propagation-delay", defaultPropagation, "how long a new access key is not yet accepted by STS (as IAM behaves)")
	return f
}

func (f *sandboxFlags) options(log *slog.Logger) sandbox.Options {
	var rules []sandbox.FaultRule
	if f.throttleRate > 0 {
		rules = append(rules, sandbox.FaultRule{Kind: "throttle", Rate: f.throttleRate})
	}
	if f.errorRate > 0 {
		rules = append(rules, sandbox.FaultRule{Kind: "5xx", Rate: f.errorRate})
	}
	return sandbox.Options{
		AccountID: f.account, Region: f.region, MemberAccounts: f.members, MemberExternalID: f.externalID,
		AdminAccessKeyID: f.keyID, AdminSecretAccessKey: f.secret,
		DataDir: f.data, Seed: f.seed, Logger: log, SESMaxSendRate: f.sesRate,
		Faults: sandbox.Faults{Rules: rules, Latency: f.latency, PropagationDelay: f.propagation},
	}
}

func (m *Main) runSandbox(ctx context.Context, args []string) error {
	fs := m.flags("sandbox")
	f := m.addSandboxFlags(fs, 0)
	m.logFormatFlag(fs)
	if err := m.parse(fs, args); err != nil {
		return err
	}
	log := m.logger(config.Config{}) // text on a terminal, else JSON; --log-format
	sb, err := sandbox.New(f.options(log))
	if err != nil {
		return &usageError{err.Error()}
	}
	if err := sb.Start(ctx, f.listen); err != nil {
		return listenError(err, f.listen, "--listen")
	}
	fmt.Fprintf(m.Stdout, `keyrot sandbox: a local AWS endpoint (IAM, STS, Secrets Manager, SES v2, SQS, Organizations) at %[1]s
It is a test double for AWS: never put real keys in it.

  export AWS_ENDPOINT_URL=%[1]s AWS_REGION=%[2]s
  export AWS_ACCESS_KEY_ID=%[3]s AWS_SECRET_ACCESS_KEY=%[4]s
  aws --endpoint-url %[1]s iam create-user --user-name ci-bot   # the AWS CLI 2.9 needs --endpoint-url

SES outbox: %[1]s/_sandbox/ses/outbox    faults: %[1]s/_sandbox/faults
`, sb.URL(), f.region, f.keyID, f.secret)
	if accounts := sb.Accounts(); len(accounts) > 1 {
		printAccounts(m.Stdout, sb.URL(), accounts)
	}
	if m.Ready != nil {
		m.Ready(map[string]string{"sandbox": sb.URL()})
	}
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := sb.Close(cctx); err != nil {
		return fmt.Errorf("sandbox: close: %w", err)
	}
	fmt.Fprintln(m.Stderr, "keyrot sandbox: stopped")
	return nil
}

// printAccounts lists the Organization's accounts, as GET /_sandbox/accounts does.
func printAccounts(w io.Writer, url string, accounts []sandbox.Account) {
	fmt.Fprintf(w, "\nOrganization (%s/_sandbox/accounts; the admin key is the management account's):\n", url)
	for _, a := range accounts {
		role := "role " + sandbox.MemberRoleARN(a.ID)
		if a.Management {
			role = "management account"
		}
		fmt.Fprintf(w, "  %s  %-10s  %-16s  %s\n", a.ID, a.Name, a.OU, role)
	}
}

// listenError says how to get past a failed listen on addr: a busy port is
// a usage error naming the flag that chooses another.
func listenError(err error, addr, flagName string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return &usageError{fmt.Sprintf("%s is in use by another process (another keyrot dev or sandbox?): choose another address with %s, for example %s 127.0.0.1:0 for any free port",
			addr, flagName, flagName)}
	}
	return fmt.Errorf("listen on %q (%s): %w", addr, flagName, err)
}
