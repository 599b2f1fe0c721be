package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// authCodes are STS's answers that the credentials themselves were refused:
// a consumer given such a key by keyrot is broken.
var authCodes = map[string]bool{
	"InvalidClientTokenId": true, "SignatureDoesNotMatch": true, "AccessDenied": true, "AccessDeniedException": true,
	"ExpiredToken": true, "UnrecognizedClientException": true, "IncompleteSignature": true, "AuthFailure": true,
}

// How a consumer gets its key.
const (
	viaAPI    = "api"    // credential_process = keyrot credentials USER --api URL (the AWS SDK for Go)
	viaDirect = "direct" // credential_process = keyrot credentials USER --direct
	viaBoto3  = "boto3"  // boto3 with credential_process = keyrot credentials USER --api URL
)

// consumerStats counts one kind of consumer's STS calls.
type consumerStats struct {
	Calls       int // STS calls attempted
	OK          int
	Failures    int // refused credentials, or no credentials from the API path
	Unavailable int // STS unreachable or failing (sandbox down, injected fault): not about the key
	FetchErrors int // --direct could not read Secrets Manager under faults: not about the key
	OKInHeal    int
}

func (t *consumerStats) add(s consumerStats) {
	t.Calls += s.Calls
	t.OK += s.OK
	t.Failures += s.Failures
	t.Unavailable += s.Unavailable
	t.FetchErrors += s.FetchErrors
	t.OKInHeal += s.OKInHeal
}

type consumerSet struct {
	w  *world
	mu sync.Mutex
	// stats by via and user
	stats     map[string]map[string]*consumerStats
	failures  []string // the first failures, described
	fetchErrs map[string]int
	healStart time.Time
	wg        sync.WaitGroup
	boto3     *boto3Consumer
}

func startConsumers(ctx context.Context, w *world) *consumerSet {
	c := &consumerSet{w: w, stats: map[string]map[string]*consumerStats{viaAPI: {}, viaDirect: {}}, fetchErrs: map[string]int{}}
	for _, u := range w.users {
		c.stats[viaAPI][u] = &consumerStats{}
		c.stats[viaDirect][u] = &consumerStats{}
		c.wg.Go(func() { c.runGo(ctx, u, viaAPI, 300*time.Millisecond) })
		c.wg.Go(func() { c.runGo(ctx, u, viaDirect, time.Second) })
	}
	if w.o.boto3 {
		if b, err := startBoto3(w, w.users[:min(2, len(w.users))]); err != nil {
			fmt.Printf("chaos: no boto3 consumer: %v\n", err)
		} else {
			c.boto3 = b
		}
	}
	return c
}

func (c *consumerSet) markHeal(t time.Time) {
	c.mu.Lock()
	c.healStart = t
	c.mu.Unlock()
	if c.boto3 != nil {
		_ = os.WriteFile(c.boto3.healFile, nil, 0o600)
	}
}

func (c *consumerSet) healing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.healStart.IsZero()
}

// errNoCredentials wraps a credential_process failure, so a call's error
// tells a key refused from no key at all.
type errNoCredentials struct{ err error }

func (e *errNoCredentials) Error() string { return "no credentials: " + e.err.Error() }
func (e *errNoCredentials) Unwrap() error { return e.err }

// trackingProvider remembers the key it last handed to the SDK.
type trackingProvider struct {
	inner aws.CredentialsProvider
	mu    sync.Mutex
	keyID string
}

func (p *trackingProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := p.inner.Retrieve(ctx)
	if err != nil {
		return creds, &errNoCredentials{err}
	}
	p.mu.Lock()
	p.keyID = creds.AccessKeyID
	p.mu.Unlock()
	return creds, nil
}

func (p *trackingProvider) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keyID
}

// runGo is one consumer: an STS client of the AWS SDK for Go whose
// credentials come from credential_process, calling GetCallerIdentity every
// `every` until ctx ends. Its credential_process's stderr goes to a log the
// leak check reads.
func (c *consumerSet) runGo(ctx context.Context, user, via string, every time.Duration) {
	w := c.w
	stderr, err := os.OpenFile(filepath.Join(w.o.work, "logs", fmt.Sprintf("consumer-%s-%s.log", via, user)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.fail(user, via, "", fmt.Sprintf("open log: %v", err))
		return
	}
	defer stderr.Close()
	args := []string{"credentials", user, "--format", "credential_process"}
	env := append(cleanEnv(), "KEYROT_CACHE_DIR="+filepath.Join(w.o.work, "cache", via+"-"+user))
	if via == viaDirect {
		args = append(args, "--direct")
		env = append(w.awsEnv(), "KEYROT_SECRET_PREFIX="+prefix)
	} else {
		args = append(args, "--api", w.apiURL)
		env = append(env, "KEYROT_API_KEY="+w.apiKey)
	}
	provider := &trackingProvider{inner: processcreds.NewProviderCommand(processcreds.NewCommandBuilderFunc(
		func(ctx context.Context) (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, w.o.keyrot, args...)
			cmd.Env = env
			cmd.Stderr = stderr
			return cmd, nil
		}), func(o *processcreds.Options) { o.Timeout = 30 * time.Second })}
	client := sts.NewFromConfig(aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(w.sandboxURL),
		Credentials:  aws.NewCredentialsCache(provider),
		HTTPClient:   &http.Client{Timeout: 15 * time.Second},
	})
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		_, err := client.GetCallerIdentity(cctx, &sts.GetCallerIdentityInput{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.record(user, via, provider.last(), err)
		sleep(ctx, every)
	}
}

// record classifies one call.
func (c *consumerSet) record(user, via, keyID string, err error) {
	healing := c.healing()
	c.mu.Lock()
	s := c.stats[via][user]
	s.Calls++
	var noCreds *errNoCredentials
	var apiErr smithy.APIError
	switch {
	case err == nil:
		s.OK++
		if healing {
			s.OKInHeal++
		}
		c.mu.Unlock()
		return
	case errors.As(err, &noCreds) && via == viaDirect && !healing:
		s.FetchErrors++
		c.fetchErrs[firstLine(noCreds.err.Error())]++
		c.mu.Unlock()
		return
	case errors.As(err, &noCreds):
		c.mu.Unlock()
		c.fail(user, via, keyID, "no credentials: "+firstLine(noCreds.err.Error()))
		return
	case errors.As(err, &apiErr) && authCodes[apiErr.ErrorCode()]:
		c.mu.Unlock()
		c.fail(user, via, keyID, "STS refused the key: "+apiErr.ErrorCode())
		return
	case errors.As(err, &apiErr), unreachable(err):
		s.Unavailable++ // throttled, 5xx, or STS not there: not about the key
		c.mu.Unlock()
	default:
		c.mu.Unlock()
		c.fail(user, via, keyID, "unexpected error: "+firstLine(err.Error()))
	}
}

// unreachable reports an error that says STS could not be reached or did
// not answer in time (the sandbox killed or slow), or that the SDK's retry
// budget ran out on such errors.
func unreachable(err error) bool {
	var send *smithyhttp.RequestSendError
	var quota ratelimit.QuotaExceededError
	var netErr net.Error
	return errors.As(err, &send) || errors.As(err, &quota) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

func (c *consumerSet) fail(user, via, keyID, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.stats[via][user]; s != nil {
		s.Failures++
	}
	if len(c.failures) < 50 {
		c.failures = append(c.failures, fmt.Sprintf("%s %s via %s with key %s: %s", time.Now().UTC().Format("15:04:05.000"), user, via, keyID, what))
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 240 {
		s = s[:240] + "..."
	}
	return s
}

func (c *consumerSet) totals() (calls, failures int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, byUser := range c.stats {
		for _, s := range byUser {
			calls += s.Calls
			failures += s.Failures
		}
	}
	return calls, failures
}

// wait stops the boto3 consumer, waits for the Go ones (their ctx is
// done), and adds the figures to r: a user whose consumers had no
// successful call while healing is stranded.
func (c *consumerSet) wait(r *report) {
	c.wg.Wait()
	if c.boto3 != nil {
		stats, failures, err := c.boto3.stop()
		if err != nil {
			r.violation("boto3 consumer: %v", err)
		}
		c.mu.Lock()
		c.stats[viaBoto3] = stats
		c.failures = append(c.failures, failures...)
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	vias := make([]string, 0, len(c.stats))
	for via := range c.stats {
		vias = append(vias, via)
	}
	sort.Strings(vias)
	for _, via := range vias {
		var t consumerStats
		users := make([]string, 0, len(c.stats[via]))
		for u, s := range c.stats[via] {
			users = append(users, u)
			t.add(*s)
		}
		sort.Strings(users)
		for _, u := range users {
			if c.stats[via][u].OKInHeal == 0 {
				r.strand(u, fmt.Sprintf("its %s consumer made no successful call while healing", via))
			}
		}
		r.consumerCalls += t.Calls
		r.consumerFailures += t.Failures
		r.detail("consumers via %-6s: %d STS calls, %d ok, %d failed, %d unavailable (STS down or faulted), %d direct reads failed under faults",
			via, t.Calls, t.OK, t.Failures, t.Unavailable, t.FetchErrors)
	}
	if len(c.fetchErrs) > 0 {
		var msgs []string
		for m, n := range c.fetchErrs {
			msgs = append(msgs, fmt.Sprintf("%dx %s", n, m))
		}
		sort.Strings(msgs)
		for _, m := range msgs[:min(5, len(msgs))] {
			r.detail("  direct read error under faults: %s", m)
		}
	}
	for _, f := range c.failures {
		r.detail("consumer failure: %s", f)
	}
}

//go:embed boto3_consumer.py
var boto3Script string

// boto3Consumer is a python3 process whose threads sign STS calls with
// boto3 on credential_process profiles (one per user).
type boto3Consumer struct {
	cmd      *exec.Cmd
	stopFile string
	healFile string
	out      *strings.Builder
	done     chan error
}

func startBoto3(w *world, users []string) (*boto3Consumer, error) {
	python, err := exec.LookPath("python3")
	if err != nil {
		return nil, err
	}
	if err := exec.Command(python, "-c", "import boto3").Run(); err != nil {
		return nil, fmt.Errorf("python3 cannot import boto3: %w", err)
	}
	dir := filepath.Join(w.o.work, "boto3")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var profiles strings.Builder
	for _, u := range users {
		fmt.Fprintf(&profiles, "[profile %s]\ncredential_process = %s credentials %s --api %s --format credential_process\n\n", u, w.o.keyrot, u, w.apiURL)
	}
	awsConfig := filepath.Join(dir, "config")
	script := filepath.Join(dir, "consumer.py")
	if err := os.WriteFile(awsConfig, []byte(profiles.String()), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(script, []byte(boto3Script), 0o600); err != nil {
		return nil, err
	}
	b := &boto3Consumer{stopFile: filepath.Join(dir, "stop"), healFile: filepath.Join(dir, "healing"), out: &strings.Builder{}, done: make(chan error, 1)}
	stderr, err := os.OpenFile(filepath.Join(w.o.work, "logs", "consumer-boto3.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(python, append([]string{script, w.sandboxURL, b.stopFile, b.healFile}, users...)...)
	b.cmd.Env = append(cleanEnv(), "AWS_CONFIG_FILE="+awsConfig, "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED=true", "KEYROT_API_KEY="+w.apiKey, "KEYROT_CACHE_DIR="+filepath.Join(w.o.work, "cache", "boto3"))
	b.cmd.Stdout = b.out
	b.cmd.Stderr = stderr
	if err := b.cmd.Start(); err != nil {
		stderr.Close()
		return nil, err
	}
	go func() { b.done <- b.cmd.Wait(); stderr.Close() }()
	return b, nil
}

// kill stops the boto3 consumer at once if it still runs (a process that
// has exited is not signalled: os.Process knows).
func (c *consumerSet) kill() {
	if c.boto3 != nil {
		_ = c.boto3.cmd.Process.Kill()
	}
}

// boto3Result is what the script prints when it stops.
type boto3Result struct {
	Users map[string]struct {
		Calls, OK, Unavailable, OKInHeal int
		Failures                         []string
	} `json:"users"`
}

// stop asks the script to finish and reads its figures.
func (b *boto3Consumer) stop() (map[string]*consumerStats, []string, error) {
	if err := os.WriteFile(b.stopFile, nil, 0o600); err != nil {
		return nil, nil, err
	}
	select {
	case err := <-b.done:
		if err != nil {
			return nil, nil, fmt.Errorf("exited: %w", err)
		}
	case <-time.After(time.Minute):
		_ = b.cmd.Process.Kill()
		return nil, nil, errors.New("did not stop within a minute")
	}
	var res boto3Result
	if err := json.Unmarshal([]byte(b.out.String()), &res); err != nil {
		return nil, nil, fmt.Errorf("output %q: %w", b.out.String(), err)
	}
	stats := map[string]*consumerStats{}
	var failures []string
	for u, s := range res.Users {
		stats[u] = &consumerStats{Calls: s.Calls, OK: s.OK, Failures: len(s.Failures), Unavailable: s.Unavailable, OKInHeal: s.OKInHeal}
		for _, f := range s.Failures {
			failures = append(failures, fmt.Sprintf("%s via boto3: %s", u, f))
		}
	}
	return stats, failures, nil
}
