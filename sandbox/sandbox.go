// Package sandbox serves, on loopback, the subset of the AWS wire protocols
// keyrot uses: IAM and STS (query protocol, XML), Secrets Manager and
// Organizations (JSON 1.1), SQS (JSON 1.0) and SES v2 (REST JSON). Every AWS
// call is authenticated with SigV4 against the sandbox's admin key, an IAM
// user's access key or a role session's key and token, and runs in that
// credential's account: with MemberAccounts it serves an Organization. It
// enforces IAM's two-keys rule, answers with AWS's error codes, injects
// faults and can run on a clock driven by tests. It is a test double: real
// keys live in AWS.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Service names, as they appear in the SigV4 credential scope.
const (
	svcIAM            = "iam"
	svcSTS            = "sts"
	svcSecretsManager = "secretsmanager"
	svcSES            = "ses"
	svcOrganizations  = "organizations"
	svcSQS            = "sqs"
)

// jsonTargets are the X-Amz-Target prefixes of the JSON-protocol services.
var jsonTargets = map[string]string{
	svcSecretsManager: "secretsmanager.",
	svcOrganizations:  "AWSOrganizationsV20161128.",
	svcSQS:            "AmazonSQS.",
}

// Options configures a sandbox. The zero value is usable.
type Options struct {
	// Clock tells the sandbox the time: creation dates, last use, the
	// propagation delay. Nil means the wall clock.
	Clock Clock
	// AccountID is the AWS account the sandbox pretends to be: the
	// management account of its Organization when MemberAccounts > 0.
	// Default "123456789012".
	AccountID string
	// MemberAccounts is how many member accounts the sandbox's Organization
	// has (ids 100000000001, 100000000002, …, names member-1, …; odd ones in
	// OU ou-root-prod0001, even ones in ou-root-dev00001), each with the role
	// keyrot-member that the management account may assume. 0: a single
	// account, no Organization.
	MemberAccounts int
	// MemberExternalID, if set, is the sts:ExternalId every member role
	// requires at first (POST /_sandbox/accounts/{id}/role changes it).
	MemberExternalID string
	// Region is the sandbox's region. Default "us-east-1".
	Region string
	// AdminAccessKeyID and AdminSecretAccessKey are the credentials of the
	// all-powerful admin principal. Default "test"/"test".
	AdminAccessKeyID, AdminSecretAccessKey string
	// DataDir, if set, is where the state persists across restarts
	// (DataDir/state.json). Empty means memory only.
	DataDir string
	// Faults are the initial fault injection rules.
	Faults Faults
	// Seed makes generated ids and fault decisions deterministic.
	Seed int64
	// Logger receives the sandbox's logs. Nil discards them.
	Logger *slog.Logger
	// MaxBodyBytes caps request bodies. Default 10 MiB.
	MaxBodyBytes int64
	// SESMaxSendRate limits SendEmail to this many messages a second, as an
	// SES sandbox account does (1/s); 0 is unlimited.
	SESMaxSendRate float64
	// CredentialReportDelay is how long, on Clock, IAM takes to generate a
	// credential report (GetCredentialReport says ReportInProgress until
	// then). Zero: ready at once, though GenerateCredentialReport still
	// answers STARTED first, as AWS does.
	CredentialReportDelay time.Duration
}

// Server is a running (or ready to run) sandbox. It is an http.Handler; Start
// serves it on a loopback address.
type Server struct {
	opts   Options
	clock  Clock
	logger *slog.Logger
	signer *v4.Signer

	org    *organization
	sts    *stsSessions
	ses    *sesService
	sqs    *sqsService
	faults *faultInjector
	store  *persister // nil when memory only

	admin http.Handler
	reqs  atomic.Uint64
	calls callCounter

	mu      sync.Mutex
	httpSrv *http.Server
	url     string
	serveWG sync.WaitGroup
	closed  bool
}

// New builds a sandbox from opts, loading its state from opts.DataDir if set.
// It does not listen: call Start, or use the Server as an http.Handler.
func New(opts Options) (*Server, error) {
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AdminAccessKeyID == "" {
		opts.AdminAccessKeyID = "test"
	}
	if opts.AdminSecretAccessKey == "" {
		opts.AdminSecretAccessKey = "test"
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 10 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:   opts,
		clock:  opts.Clock,
		logger: opts.Logger.With("system", "sandbox"),
		signer: v4.NewSigner(),
		faults: newFaultInjector(opts.Seed, opts.Faults),
	}
	signal := func() {}
	if opts.DataDir != "" {
		s.store = newPersister(opts.DataDir, s.logger)
		signal = s.store.signal
	}
	if opts.MemberAccounts < 0 || opts.MemberAccounts > maxMemberAccounts {
		return nil, fmt.Errorf("sandbox: member accounts %d: must be between 0 and %d", opts.MemberAccounts, maxMemberAccounts)
	}
	org, err := newOrganization(opts, signal, func(i int, id string) (*iamService, *secretsManager) {
		// Each account draws its own ids: an access key id names one account.
		seed := opts.Seed + int64(i)*0x9e3779b9
		iam := newIAM(opts.Clock, id, seed, signal)
		iam.reportDelay = opts.CredentialReportDelay
		iam.propagation = s.faults.propagationDelay
		if s.store != nil {
			iam.used = s.store.touch
		}
		return iam, newSecretsManager(opts.Clock, id, opts.Region, seed, signal)
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	s.org = org
	s.sts = newSTSSessions(opts.Clock, opts.Seed, signal)
	s.ses = newSES(opts.Clock, opts.Seed, signal)
	s.ses.setMaxSendRate(opts.SESMaxSendRate)
	s.sqs = newSQS(opts.Clock, opts.Region, opts.Seed, signal)
	if s.store != nil {
		mgmt := s.org.management()
		s.store.register(svcIAM, mgmt.iam)
		s.store.register(svcSecretsManager, any(mgmt.sm))
		s.store.register(svcSES, any(s.ses))
		s.store.register("accounts", membersPersistence{s.org})
		s.store.register(svcSTS, s.sts)
		s.store.register(svcSQS, s.sqs)
		if err := s.store.load(); err != nil {
			return nil, fmt.Errorf("sandbox: load state from %q: %w", opts.DataDir, err)
		}
		s.store.start()
	}
	s.admin = s.adminMux()
	return s, nil
}

// Start listens on addr (for example "127.0.0.1:0") and serves in a
// goroutine. A bind error is returned; ctx only bounds the listen.
func (s *Server) Start(ctx context.Context, addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sandbox: start: server closed")
	}
	if s.httpSrv != nil {
		return errors.New("sandbox: start: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("sandbox: listen on %q: %w", addr, err)
	}
	s.url = "http://" + ln.Addr().String()
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
	}
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
	s.logger.Info("listening", "url", s.url)
	return nil
}

// URL is the base URL the sandbox listens on, e.g. "http://127.0.0.1:41234".
// It is empty until Start succeeds.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Close shuts the server down gracefully (bounded by ctx) and flushes the
// state to disk. It is safe to call more than once.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.httpSrv
	s.mu.Unlock()

	var errs []error
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sandbox: shutdown: %w", err))
			_ = srv.Close()
		}
		s.serveWG.Wait()
	}
	if s.store != nil {
		if err := s.store.close(); err != nil {
			errs = append(errs, fmt.Errorf("sandbox: flush state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// SetFaults replaces the fault injection rules. Count rules start afresh.
func (s *Server) SetFaults(f Faults) { s.faults.set(f) }

// Faults returns the current fault injection rules, with Count showing what
// is left of each rule.
func (s *Server) Faults() Faults { return s.faults.get() }

// Outbox returns the emails SES v2 has "sent", oldest first.
func (s *Server) Outbox() []Email { return s.ses.outbox() }

// DrainOutbox returns the emails SES v2 has "sent", oldest first, and
// empties the outbox at once (a long test keeps the outbox, and the state
// file, small this way without losing a message).
func (s *Server) DrainOutbox() []Email { return s.ses.drainOutbox() }

// ClearOutbox empties the SES outbox.
func (s *Server) ClearOutbox() { s.ses.clearOutbox() }

// FaultCounts returns how many faults of each kind were injected since the
// sandbox started.
func (s *Server) FaultCounts() FaultCounts { return s.faults.counts() }

// IssuedKeys returns every access key that exists and every one deleted
// since the sandbox started, in every account, secrets included, oldest
// first.
func (s *Server) IssuedKeys() []IssuedKey {
	var out []IssuedKey
	for _, a := range s.org.accounts {
		out = append(out, a.iam.issuedKeys()...)
	}
	if len(s.org.accounts) > 1 {
		sortIssuedKeys(out)
	}
	return out
}

// AdminCredentials returns the admin access key id and secret access key.
func (s *Server) AdminCredentials() (id, secret string) {
	return s.opts.AdminAccessKeyID, s.opts.AdminSecretAccessKey
}

// ServeHTTP serves the admin endpoints under /_sandbox/ and every AWS call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		s.admin.ServeHTTP(w, r)
		return
	}
	c := &call{service: guessService(r), requestID: s.newRequestID()}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger.Error("panic serving aws call", "service", c.service, "op", c.op,
				"request_id", c.requestID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			s.writeError(w, c, errorf(http.StatusInternalServerError, "InternalFailure",
				"The request processing has failed because of an unknown error, exception or failure."))
		}
	}()
	s.serveAWS(w, r, c)
}

// call is one AWS request on its way through the dispatcher.
type call struct {
	service   string // svcIAM, svcSTS, svcSecretsManager, svcSES
	op        string
	requestID string
	body      []byte
	caller    principal
}

func (s *Server) newRequestID() string {
	n := s.reqs.Add(1)
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(s.opts.Seed), uint16(n>>48), (n>>36)&0xfff, (n>>24)&0xfff, n&0xffffffffffff)
}

func (s *Server) serveAWS(w http.ResponseWriter, r *http.Request, c *call) {
	start := time.Now()
	auth, authErr := parseAuthorization(r)
	if auth != nil {
		c.service = auth.Service
	}
	if !knownService(c.service) {
		c.service = svcIAM
		s.writeError(w, c, errorf(http.StatusBadRequest, "InvalidAction", "The sandbox does not serve the service %q.", auth.Service))
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.writeError(w, c, errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
				"Request body is larger than the limit of %d bytes.", s.opts.MaxBodyBytes))
			return
		}
		s.writeError(w, c, errorf(http.StatusBadRequest, "IncompleteBody", "Could not read the request body: %v", err))
		return
	}
	c.body = body

	form, apiErr := s.operation(r, c)
	if apiErr != nil {
		s.writeError(w, c, apiErr)
		return
	}
	if apiErr := s.authenticate(r, c, auth, authErr); apiErr != nil {
		s.writeError(w, c, apiErr)
		return
	}
	s.calls.add(c.service + ":" + c.op)
	if err := s.faults.delay(r.Context()); err != nil {
		return // the client went away
	}
	if apiErr, lost := s.faults.check(c.service, c.op, c.caller.Account); apiErr != nil {
		s.logger.Debug("fault injected", "service", c.service, "op", c.op, "code", apiErr.Code, "lost_response", lost)
		if lost {
			s.dispatch(discardResponse{header: http.Header{}}, r, c, form)
			if !s.durable(w, c) {
				return
			}
		}
		s.writeError(w, c, apiErr)
		return
	}
	if s.store == nil {
		s.dispatch(w, r, c, form)
	} else {
		var buf bufferedResponse
		s.dispatch(&buf, r, c, form)
		if s.durable(w, c) {
			buf.sendTo(w)
		}
	}
	s.logger.Debug("aws call", "service", c.service, "op", c.op, "key", c.caller.AccessKeyID,
		"request_id", c.requestID, "duration", time.Since(start))
}

// operation finds the operation a request asks for, the protocol's way.
// For the query protocol it also returns the parsed form.
func (s *Server) operation(r *http.Request, c *call) (map[string][]string, *apiError) {
	switch c.service {
	case svcSecretsManager, svcOrganizations, svcSQS:
		target := r.Header.Get("X-Amz-Target")
		op, ok := strings.CutPrefix(target, jsonTargets[c.service])
		if !ok || op == "" {
			return nil, errorf(http.StatusBadRequest, "UnknownOperationException", "Missing or invalid X-Amz-Target header %q.", target)
		}
		c.op = op
		return nil, nil
	case svcSES:
		op, ok := s.ses.route(r.Method, r.URL.EscapedPath())
		if !ok {
			return nil, errorf(http.StatusNotFound, "UnknownOperationException", "No SES v2 operation for %s %s.", r.Method, r.URL.Path)
		}
		c.op = op
		return nil, nil
	default:
		form, apiErr := parseQueryForm(r, c.body)
		if apiErr != nil {
			return nil, apiErr
		}
		c.op = form.Get("Action")
		if c.op == "" {
			return nil, errorf(http.StatusBadRequest, "MissingAction", "Missing Action")
		}
		return form, nil
	}
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, c *call, form map[string][]string) {
	acct := s.org.get(c.caller.Account)
	if err := s.roleGone(c); err != nil {
		s.writeError(w, c, err)
		return
	}
	switch c.service {
	case svcIAM:
		resp, apiErr := acct.iam.handle(c.caller, c.op, form)
		if apiErr != nil {
			s.writeError(w, c, apiErr)
			return
		}
		writeQueryResponse(w, c, iamNamespace, resp)
	case svcSTS:
		resp, apiErr := s.handleSTS(c.caller, c.op, form)
		if apiErr != nil {
			s.writeError(w, c, apiErr)
			return
		}
		writeQueryResponse(w, c, stsNamespace, resp)
	case svcSecretsManager:
		resp, apiErr := acct.sm.handle(c.caller, c.op, c.body)
		if apiErr != nil {
			s.writeError(w, c, apiErr)
			return
		}
		writeJSON(w, c, "application/x-amz-json-1.1", http.StatusOK, resp)
	case svcOrganizations:
		resp, apiErr := s.handleOrganizations(c.caller, c.op, c.body)
		if apiErr != nil {
			s.writeError(w, c, apiErr)
			return
		}
		writeJSON(w, c, "application/x-amz-json-1.1", http.StatusOK, resp)
	case svcSQS:
		resp, apiErr := s.sqs.handle(r.Context(), c.caller, c.op, c.body, "http://"+r.Host)
		if apiErr != nil {
			s.writeError(w, c, apiErr)
			return
		}
		writeJSON(w, c, "application/x-amz-json-1.0", http.StatusOK, resp)
	case svcSES:
		status, resp, apiErr := s.ses.handle(c.caller, c.op, r, c.body)
		if apiErr != nil {
			s.writeError(w, c, apiErr)
			return
		}
		if status == 0 {
			status = http.StatusOK
		}
		writeJSON(w, c, "application/json", status, resp)
	}
}

// durable waits until the call's changes are on disk (with DataDir), so
// that what a call acknowledges survives a kill -9. If they cannot be
// written, it answers with a 500 and reports false.
func (s *Server) durable(w http.ResponseWriter, c *call) bool {
	if s.store == nil {
		return true
	}
	if err := s.store.sync(); err != nil {
		s.logger.Error("persist state before answering", "service", c.service, "op", c.op, "err", err)
		s.writeError(w, c, errorf(http.StatusInternalServerError, "InternalFailure",
			"The request processing has failed because of an unknown error, exception or failure."))
		return false
	}
	return true
}

// bufferedResponse holds a response until its call's changes are on disk.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) sendTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

// discardResponse takes the response of a call whose answer is lost.
type discardResponse struct{ header http.Header }

func (d discardResponse) Header() http.Header         { return d.header }
func (d discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (d discardResponse) WriteHeader(int)             {}

func knownService(svc string) bool {
	switch svc {
	case svcIAM, svcSTS, svcSecretsManager, svcSES, svcOrganizations, svcSQS:
		return true
	}
	return false
}

// guessService tells the services apart when the request carries no usable
// credential scope, so that even an unauthenticated request gets its error in
// the right protocol.
func guessService(r *http.Request) string {
	target := r.Header.Get("X-Amz-Target")
	for svc, prefix := range jsonTargets {
		if strings.HasPrefix(target, prefix) {
			return svc
		}
	}
	if strings.HasPrefix(r.URL.Path, "/v2/email/") {
		return svcSES
	}
	if r.URL.Query().Get("Action") == "GetCallerIdentity" {
		return svcSTS
	}
	return svcIAM
}

func writeJSON(w http.ResponseWriter, c *call, contentType string, status int, resp any) {
	b := []byte("{}")
	if resp != nil {
		var err error
		if b, err = json.Marshal(resp); err != nil {
			panic(fmt.Sprintf("sandbox: encode %s %s response: %v", c.service, c.op, err))
		}
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Amzn-Requestid", c.requestID)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError renders an AWS error the way the call's protocol does.
func (s *Server) writeError(w http.ResponseWriter, c *call, e *apiError) {
	if e.Status >= 500 {
		s.logger.Warn("aws call failed", "service", c.service, "op", c.op, "code", e.Code, "request_id", c.requestID)
	}
	switch c.service {
	case svcSecretsManager, svcOrganizations:
		h := w.Header()
		h.Set("X-Amzn-Errortype", e.Code)
		writeJSON(w, c, "application/x-amz-json-1.1", e.Status, map[string]string{"__type": e.Code, "message": e.Message})
	case svcSQS:
		writeSQSError(w, c, e)
	case svcSES:
		w.Header().Set("X-Amzn-Errortype", e.Code)
		writeJSON(w, c, "application/json", e.Status, map[string]string{"message": e.Message})
	case svcSTS:
		writeQueryError(w, c, stsNamespace, e)
	default:
		writeQueryError(w, c, iamNamespace, e)
	}
}

func (s *Server) adminMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sandbox/healthz", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.outboxRoutes(mux)
	s.accountRoutes(mux)
	mux.HandleFunc("GET /_sandbox/sqs", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.sqs.list("http://"+r.Host))
	})
	mux.HandleFunc("GET /_sandbox/calls", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.Calls())
	})
	mux.HandleFunc("POST /_sandbox/ses/outbox/drain", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.DrainOutbox())
	})
	mux.HandleFunc("DELETE /_sandbox/calls", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCalls()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("GET /_sandbox/faults/injected", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.FaultCounts())
	})
	mux.HandleFunc("GET /_sandbox/iam/access-keys", func(w http.ResponseWriter, r *http.Request) {
		adminJSON(w, http.StatusOK, s.IssuedKeys())
	})
	mux.HandleFunc("POST /_sandbox/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": "decode faults: " + err.Error()})
			return
		}
		if err := f.validate(); err != nil {
			adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.SetFaults(f)
		adminJSON(w, http.StatusOK, s.Faults())
	})
	return mux
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
