// Package mototest runs moto_server, a second and independent emulator of
// the AWS APIs, for the tests that check keyrot and its sandbox against it.
//
// The server listens on loopback and checks SigV4 signatures: it starts with
// INITIAL_NO_AUTH_ACTION_COUNT=3, spends those three unauthenticated actions
// on an admin user with an allow-everything inline policy and its access key,
// and from then on rejects any request not signed by a key it knows. Every
// call a test makes therefore proves its request signing as well.
//
// One server serves a whole test binary (see Shared): tests isolate
// themselves with unique names.
package mototest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/keyrot/keyrot/sandbox/sandboxtest"
)

// Version is the moto release the tests were written against; .ci/run
// installs it when moto_server is missing.
const Version = "5.2.1"

// ErrNotInstalled is returned by Start when moto_server is not on PATH.
var ErrNotInstalled = errors.New("moto_server is not on PATH (pip install 'moto[server]==" + Version + "')")

// AccountID is the account moto serves by default.
const AccountID = "123456789012"

// adminUser is the user whose key signs every admin call.
const adminUser = "keyrot-moto-admin"

// Server is a running moto_server.
type Server struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:41234".
	URL string

	adminID, adminSecret string
	cmd                  *exec.Cmd
	exited               chan struct{}
	stderr               *tailBuffer
	namespaces           atomic.Int64
	memberMu             sync.Mutex // MemberConfig's unauthenticated window
}

// Start runs moto_server on a free loopback port, waits until it answers,
// and creates the admin identity. It returns ErrNotInstalled when
// moto_server is not on PATH.
func Start(ctx context.Context) (*Server, error) {
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, ErrNotInstalled
	}
	var lastErr error
	for range 3 { // the free port may be taken between the probe and moto's bind
		s, err := start(ctx, bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(ctx context.Context, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{}), stderr: &tailBuffer{max: 4096}}
	s.cmd = exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	s.cmd.Env = append(os.Environ(), "INITIAL_NO_AUTH_ACTION_COUNT=3", "MOTO_ALLOW_NONEXISTENT_REGION=false")
	s.cmd.Stdout = s.stderr
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("mototest: start moto_server: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.bootstrap(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("mototest: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls moto's dashboard endpoint, which is not an AWS action and
// so does not spend the unauthenticated actions, until it answers.
func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/moto-api/", nil)
		if err != nil {
			return fmt.Errorf("mototest: %w", err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("mototest: moto_server exited while starting: %s", s.stderr.String())
		case <-ctx.Done():
			return fmt.Errorf("mototest: moto_server did not answer within %s: %s", limit, s.stderr.String())
		case <-tick.C:
		}
	}
}

// bootstrap spends the three unauthenticated actions on the admin identity.
func (s *Server) bootstrap(ctx context.Context) error {
	var err error
	if s.adminID, s.adminSecret, err = s.createAdmin(ctx, ""); err != nil {
		return err
	}
	// From here on moto checks every signature: prove it does.
	if _, err := iam.NewFromConfig(s.config("AKIAUNKNOWNUNKNOWN00", "wrong")).ListUsers(ctx, &iam.ListUsersInput{}); err == nil {
		return errors.New("mototest: moto_server accepted an unknown key after bootstrap: signing is not being checked")
	}
	return nil
}

// createAdmin makes the admin user, its allow-everything policy and its
// access key with three unauthenticated actions, in account (moto's
// x-moto-account-id header; "" is the default account).
func (s *Server) createAdmin(ctx context.Context, account string) (id, secret string, err error) {
	var opts []func(*iam.Options)
	if account != "" {
		opts = append(opts, iam.WithAPIOptions(smithyhttp.AddHeaderValue("x-moto-account-id", account)))
	}
	client := iam.NewFromConfig(s.config("bootstrap", "bootstrap"), opts...)
	if _, err := client.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(adminUser)}); err != nil {
		return "", "", fmt.Errorf("mototest: create admin user: %w", err)
	}
	const policy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
	if _, err := client.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(adminUser), PolicyName: aws.String("everything"), PolicyDocument: aws.String(policy)}); err != nil {
		return "", "", fmt.Errorf("mototest: admin policy: %w", err)
	}
	out, err := client.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(adminUser)})
	if err != nil {
		return "", "", fmt.Errorf("mototest: admin key: %w", err)
	}
	return aws.ToString(out.AccessKey.AccessKeyId), aws.ToString(out.AccessKey.SecretAccessKey), nil
}

// MemberConfig returns an aws.Config signed by an admin of another account
// (moto keeps one state per account id: IAM, STS, Secrets Manager, ...), for
// a test to set up that account: its role, its users. moto only lets an
// account in through a key of that account, so this reopens three
// unauthenticated actions (moto's reset-auth) and spends them on the admin
// identity there: call it before any other caller uses the server at the
// same time, or on a server of its own (Start).
func (s *Server) MemberConfig(ctx context.Context, account string) (aws.Config, error) {
	s.memberMu.Lock()
	defer s.memberMu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/moto-api/reset-auth", strings.NewReader("3"))
	if err != nil {
		return aws.Config{}, fmt.Errorf("mototest: %w", err)
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return aws.Config{}, fmt.Errorf("mototest: reset auth: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return aws.Config{}, fmt.Errorf("mototest: reset auth: %s", resp.Status)
	}
	id, secret, err := s.createAdmin(ctx, account)
	if err != nil {
		return aws.Config{}, fmt.Errorf("mototest: account %s: %w", account, err)
	}
	return s.config(id, secret), nil
}

// Namespace returns a short prefix no other caller on this server gets,
// for names (users, groups, secrets) that must not collide with another
// test's, or with a test run again with -count.
func (s *Server) Namespace() string {
	return "n" + strconv.FormatInt(s.namespaces.Add(1), 36) + "-"
}

// Close stops the server. It is safe to call more than once.
func (s *Server) Close() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// AdminCredentials returns the admin user's access key.
func (s *Server) AdminCredentials() (id, secret string) { return s.adminID, s.adminSecret }

// AdminUser is the name of the admin user (it exists in moto's IAM).
func (s *Server) AdminUser() string { return adminUser }

// Config returns an aws.Config signed with the admin key, pointed at the
// server, in us-east-1, with sandboxtest.EndpointConfig's fast retryer.
func (s *Server) Config() aws.Config { return s.config(s.adminID, s.adminSecret) }

// UserConfig is Config signed with another key.
func (s *Server) UserConfig(accessKeyID, secretAccessKey string) aws.Config {
	return s.config(accessKeyID, secretAccessKey)
}

func (s *Server) config(id, secret string) aws.Config {
	return sandboxtest.EndpointConfig(s.URL, id, secret)
}

// Shared starts one server for a whole test binary, on first use. Declare
// it in the package's tests and close it from TestMain:
//
//	var moto mototest.Shared
//	func TestMain(m *testing.M) { code := m.Run(); moto.Close(); os.Exit(code) }
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Get returns the shared server, starting it if needed. Without
// moto_server it skips the test with one line saying so; a server that
// fails to start fails the test.
func (sh *Shared) Get(t testing.TB) *Server {
	t.Helper()
	sh.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sh.srv, sh.err = Start(ctx)
	})
	if errors.Is(sh.err, ErrNotInstalled) {
		t.Skipf("moto backend skipped: %v", sh.err)
	}
	if sh.err != nil {
		t.Fatalf("moto backend: %v", sh.err)
	}
	return sh.srv
}

// Close stops the shared server if it was started.
func (sh *Shared) Close() { sh.srv.Close() }

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
