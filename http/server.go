package http

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyrot/keyrot"
	"github.com/keyrot/keyrot/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"
)

// OpenAPI is the OpenAPI 3 document of the API, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Defaults for ServerConfig's zero fields.
const (
	DefaultListen            = ":8000"
	DefaultRateLimit         = 20.0 // requests per second per API key
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 15 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
	// MaxBodyBytes bounds a request body; the API reads none.
	MaxBodyBytes = 4 << 10
)

// ServerConfig configures a Server. Zero fields take the defaults above.
type ServerConfig struct {
	// Listen is the address to listen on (default ":8000", as the seed).
	Listen string
	// Listener, if set, is served instead of listening on Listen: the
	// caller bound it (to learn a ":0" port before the server starts, or
	// to report a busy port in its own terms). Close closes it.
	Listener net.Listener
	// TLSCert and TLSKey are PEM files; with both set the server speaks
	// HTTPS only (TLS 1.2 or later). Setting one without the other is an error.
	TLSCert, TLSKey string
	// Keys are the API keys accepted; at least one is required.
	Keys []APIKey
	// RateLimit is the requests per second allowed to each API key
	// (default 20; negative for no limit), with bursts of Burst (default
	// twice the rate, at least 1).
	RateLimit float64
	Burst     int
	// Timeouts and header limit of the underlying http.Server.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// Registry receives the server's collectors (a new private registry
	// when nil); Gatherer is what /metrics serves (Registry itself when
	// it is a Gatherer).
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
	// MetricsPublic serves every series at /metrics without an API key
	// (api.metrics_public). Off, the default, a scrape without a key gets
	// only the series that name no user and no API key (metrics.Public);
	// with a key, those its scope covers (every series for a key that may
	// read every user).
	MetricsPublic bool
	// AuthFailures limits failed authentication per client address.
	AuthFailures AuthFailureLimit
}

// Server is the keyrot REST API.
type Server struct {
	cfg      ServerConfig
	cache    *Cache
	accounts *AccountCaches // WithAccounts: several accounts' caches, or nil
	keys     atomic.Pointer[keyring]
	limiters sync.Map // API key name -> *rate.Limiter
	limit    rate.Limit
	burst    int
	failures *failedAuth

	metrics  *metrics.Metrics
	routeM   map[string]*metrics.Route // by route label, resolved once
	gatherer prometheus.Gatherer
	// metricsAll serves every series, metricsPublic those naming no user
	// or API key.
	metricsAll, metricsPublic http.Handler
	logger                    *slog.Logger
	access                    *slog.Logger
	audit                     *slog.Logger
	clock                     keyrot.Clock

	handler http.Handler
	mounts  []mount // WithHandler
	srv     *http.Server
	ln      net.Listener
	tls     bool
	served  chan error
}

// ServerOption configures a Server.
type ServerOption func(*Server)

// WithLogger sets the logger. A single-user credential read (GET
// /credentials/{user}, whatever its outcome) writes one record to it,
// "credentials read" with system=audit, naming the API key, user, key id,
// remote address, format and outcome, and the request's method, route,
// status and duration. GET /credentials writes such an audit record per
// user it returns; it and every other request also write an access record,
// "request" with system=http (health probes at debug level). Records are
// handed to the logger's handler as the request finishes, not buffered
// here: give it the process's logging.Writer.
func WithLogger(l *slog.Logger) ServerOption { return func(s *Server) { s.logger = l } }

// WithClock sets the clock used for request durations and rate limits.
func WithClock(c keyrot.Clock) ServerOption { return func(s *Server) { s.clock = c } }

// WithMetrics makes the server record into m (created by the caller on the
// registry it also uses for rotation and notification metrics) instead of
// creating its own collectors on ServerConfig.Registry.
func WithMetrics(m *metrics.Metrics) ServerOption { return func(s *Server) { s.metrics = m } }

// NewServer returns a server for cache with cfg's keys and limits. It
// validates the configuration; Open starts serving.
func NewServer(cfg ServerConfig, cache *Cache, opts ...ServerOption) (*Server, error) {
	if cache == nil {
		return nil, errors.New("http: nil cache")
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("http: api.tls_cert and api.tls_key must be set together")
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("http: no API keys configured: set API_KEY or api.keys")
	}
	setDefaults(&cfg)
	s := &Server{cfg: cfg, cache: cache, clock: keyrot.SystemClock{}, logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(s)
	}
	if err := s.SetKeys(cfg.Keys); err != nil {
		return nil, err
	}
	s.access = s.logger.With("system", "http")
	s.audit = s.logger.With("system", "audit")
	s.failures = newFailedAuth(cfg.AuthFailures)

	switch {
	case cfg.RateLimit < 0:
		s.limit, s.burst = rate.Inf, 1
	default:
		s.limit, s.burst = rate.Limit(cfg.RateLimit), cfg.Burst
		if s.burst <= 0 {
			s.burst = max(1, int(math.Ceil(2*cfg.RateLimit)))
		}
	}

	reg := cfg.Registry
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gatherer = r, r
	}
	if cfg.Gatherer != nil {
		s.gatherer = cfg.Gatherer
	} else if g, ok := reg.(prometheus.Gatherer); ok && s.gatherer == nil {
		s.gatherer = g
	}
	if s.metrics == nil {
		m, err := metrics.New(reg)
		if err != nil {
			return nil, fmt.Errorf("http: %w", err)
		}
		s.metrics = m
	}
	var already prometheus.AlreadyRegisteredError
	if err := s.metrics.WatchKeyAges(cache, s.clock.Now); err != nil && !errors.As(err, &already) {
		return nil, fmt.Errorf("http: %w", err)
	}
	if err := s.metrics.WatchCacheStale(cache); err != nil && !errors.As(err, &already) {
		return nil, fmt.Errorf("http: %w", err)
	}
	if err := s.metrics.WatchAPIKeyExpiry(s.keyExpiries, s.clock.Now); err != nil && !errors.As(err, &already) {
		return nil, fmt.Errorf("http: %w", err)
	}
	s.handler = s.routes()
	s.routeM = make(map[string]*metrics.Route, len(routePatterns)+2)
	for _, route := range append([]string{"unmatched", "not_found"}, routePatterns...) {
		s.routeM[route] = s.metrics.Route(route)
	}
	return s, nil
}

// routePatterns are the routes the mux serves, as metrics and logs label them.
var routePatterns = []string{
	"GET /credentials/{user}", "GET /credentials/{account}/{user}", "GET /credentials", "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.yaml",
	"/credentials/{user}", "/credentials/{account}/{user}", "/credentials", "/healthz", "/readyz", "/metrics", "/openapi.yaml",
}

func setDefaults(c *ServerConfig) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.RateLimit == 0 {
		c.RateLimit = DefaultRateLimit
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// SetKeys replaces the accepted API keys at once, for example after the
// secret holding them changed: list the new key beside the old one, give
// consumers the new one, then drop the old.
func (s *Server) SetKeys(keys []APIKey) error {
	kr, err := newKeyring(keys)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	s.keys.Store(kr)
	return nil
}

// Handler returns the API's handler, for tests and benchmarks.
func (s *Server) Handler() http.Handler { return s.handler }

// Open listens on the configured address, so that a bind or certificate
// error is returned here, and serves in a goroutine until Close.
func (s *Server) Open() error {
	var tlsConfig *tls.Config
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("http: load tls certificate %q: %w", s.cfg.TLSCert, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.tls = true
	}
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("http: listen on %q: %w", s.cfg.Listen, err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.access.Handler(), slog.LevelWarn),
	}
	s.served = make(chan error, 1)
	go func() {
		var err error
		if s.tls {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.served <- err
	}()
	return nil
}

// URL is the server's base URL once open, with a loopback host when it
// listens on all addresses.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return BaseURL(s.ln.Addr(), s.tls)
}

// BaseURL is the URL a client on this machine uses for a server listening
// on addr: localhost when it listens on all addresses.
func BaseURL(addr net.Addr, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return scheme + "://" + addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// Close stops accepting connections and waits for in-flight requests until
// ctx is done, then closes the remaining connections.
func (s *Server) Close(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("http: graceful shutdown: %w", err)
	}
	if serr := <-s.served; serr != nil && err == nil {
		err = fmt.Errorf("http: serve: %w", serr)
	}
	return err
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /credentials/{user}", s.handleCredentials)
	mux.HandleFunc("GET /credentials/{account}/{user}", s.handleAccountCredentials)
	mux.HandleFunc("GET /credentials", s.handleList)
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /readyz", s.handleReady)
	s.metricsAll = promhttp.HandlerFor(s.gatherer, s.metricsOpts())
	s.metricsPublic = promhttp.HandlerFor(metrics.Public(s.gatherer), s.metricsOpts())
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		writeBody(w, http.StatusOK, "application/yaml", OpenAPI)
	})
	// The same paths without a method answer 405 as JSON (the mux's own
	// 405 is plain text); anything else is a JSON 404.
	for _, p := range []string{"/credentials/{user}", "/credentials/{account}/{user}", "/credentials", "/healthz", "/readyz", "/metrics", "/openapi.yaml"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			s.error(w, r, errMethodNotAllowed)
		})
	}
	for _, m := range s.mounts {
		mux.Handle(m.pattern, m.handler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.error(w, r, errNotFound) })
	return s.middleware(mux)
}

// recorder keeps what the access log needs from a response, and the audit
// record of a single-user credential read, which the middleware writes
// together with the request's fields as one record.
type recorder struct {
	http.ResponseWriter
	status int
	apiKey string // the authenticated key's name
	audit  auditFields
	// authFailed marks a request refused for a missing or wrong API key,
	// or because its client is blocked: its access record is sampled.
	authFailed bool
	client     netip.Addr // with authFailed
}

// auditFields are what an audit record says about one credential read; an
// empty outcome means there is none.
type auditFields struct {
	apiKey, user, keyID, format, outcome string
}

// recorders recycles recorders: one per request otherwise.
var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// middleware bounds the body, recovers panics, and records every request
// in the metrics, labelled by route pattern, and in the log: a single-user
// credential read as one audit record (system=audit) that also carries the
// request's fields, any other request as an access record (system=http).
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.clock.Now()
		rec := recorders.Get().(*recorder)
		*rec = recorder{ResponseWriter: w}
		// Nothing this API answers may be cached: the credentials
		// least of all, and errors so that no proxy replays them.
		w.Header()["Cache-Control"] = noStore
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.logger.Error("panic serving request", "system", "http", "panic", fmt.Sprint(p), "route", r.Pattern)
				if rec.status == 0 {
					s.error(rec, r, fmt.Errorf("panic: %v", p))
				}
			}
			s.logRequest(rec, r, start)
			*rec = recorder{}
			recorders.Put(rec)
		}()
		if r.ContentLength > MaxBodyBytes {
			s.error(rec, r, errTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		}
		next.ServeHTTP(rec, r)
	})
}

// logRequest observes a finished request in the metrics and writes its
// record: the audit record of a credential read, with the request's fields
// added, or else the access record.
func (s *Server) logRequest(rec *recorder, r *http.Request, start time.Time) {
	route := r.Pattern
	if route == "" {
		route = "unmatched"
	} else if route == "/" {
		route = "not_found"
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	now := s.clock.Now()
	d := now.Sub(start)
	if m, ok := s.routeM[route]; ok {
		m.Observe(rec.status, d)
	} else {
		s.metrics.ObserveRequest(route, rec.status, d)
	}
	request := [...]slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", rec.status),
		slog.Duration("duration", d),
		slog.String("remote", r.RemoteAddr),
	}
	if rec.authFailed {
		// A guesser must not be able to fill the disk: one record per
		// client now and then, with the count of those left out.
		write, suppressed := s.failures.admitLog(rec.client, now)
		if write {
			s.record(r.Context(), s.access.Handler(), slog.LevelInfo, now, "request",
				request[0], request[1], request[2], request[3], request[4],
				slog.String("outcome", "auth_failed"), slog.Int("suppressed", suppressed))
		}
		return
	}
	if a := &rec.audit; a.outcome != "" {
		s.record(r.Context(), s.audit.Handler(), slog.LevelInfo, now, "credentials read",
			slog.String("api_key", a.apiKey),
			slog.String("user", a.user),
			slog.String("key_id", a.keyID),
			request[4], // remote
			slog.String("format", a.format),
			slog.String("outcome", a.outcome),
			request[0], request[1], request[2], request[3])
		return
	}
	level := slog.LevelInfo
	if probeRoutes[route] {
		level = slog.LevelDebug
	}
	s.record(r.Context(), s.access.Handler(), level, now, "request",
		request[0], request[1], request[2], request[3], request[4],
		slog.String("api_key", rec.apiKey))
}

// error writes err as a JSON error; server errors are logged with their
// whole chain, client errors only in the access log.
func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := statusOf(err)
	if status >= 500 && !errors.Is(err, errNotReady) {
		s.logger.Error("request failed", "system", "http", "route", r.Pattern, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keyrot"`)
	}
	// A message may quote what the client sent (a format, a user name):
	// should that be a secret, it does not come back.
	writeJSON(w, status, ErrorResponse{Error: ErrorBody{Code: code, Message: keyrot.RedactSecrets(msg)}})
}

// presentedKey is the API key a request presents, in X-API-Key or
// Authorization: Bearer, or "".
func presentedKey(r *http.Request) string {
	// The header's canonical form, looked up without canonicalising
	// "X-API-Key" on every request.
	if v := r.Header["X-Api-Key"]; len(v) > 0 && v[0] != "" {
		return v[0]
	}
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(token)
	}
	return ""
}

// authenticate finds the API key the request presents and applies the
// limits: a client blocked for failed attempts is refused before its key is
// looked at; a missing or wrong key counts against its address; a known
// key is rate limited, then refused if it has expired (the key is returned
// with errRateLimited and errKeyExpired, for the audit record).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*APIKey, error) {
	now := s.clock.Now()
	rec, _ := w.(*recorder)
	if s.failures.tracked.Load() != 0 {
		addr := clientAddr(r)
		if wait := s.failures.blocked(addr, now); wait > 0 {
			if rec != nil {
				rec.authFailed, rec.client = true, addr
			}
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			return nil, errAuthBlocked
		}
	}
	e := s.keys.Load().entry(presentedKey(r))
	if e == nil {
		addr := clientAddr(r)
		s.failures.fail(addr, now)
		if rec != nil {
			rec.authFailed, rec.client = true, addr
		}
		return nil, errUnauthorized
	}
	key := e.key
	if rec != nil {
		rec.apiKey = key.Name
	}
	if s.limit != rate.Inf {
		lim, ok := s.limiters.Load(key.Name)
		if !ok {
			lim, _ = s.limiters.LoadOrStore(key.Name, rate.NewLimiter(s.limit, s.burst))
		}
		if !lim.(*rate.Limiter).AllowN(now, 1) {
			retry := max(1, int(math.Ceil(1/float64(s.limit))))
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			return key, errRateLimited
		}
	}
	if e.expiredAt(now.UnixNano()) {
		return key, errKeyExpired
	}
	return key, nil
}

// deniedOutcome is the audit outcome of an authenticated key's refusal.
func deniedOutcome(err error) string {
	if errors.Is(err, errKeyExpired) {
		return "expired"
	}
	return "rate_limited"
}

var noStore = []string{"no-store"}

// cacheAgeHeader carries, in whole seconds, how long ago keyrot last
// confirmed that the key served is the current one (for a list, the oldest
// of them). It stays under the refresh interval unless reads of Secrets
// Manager fail, when the last good key is served and the age grows.
const cacheAgeHeader = "X-Keyrot-Cache-Age"

// ageValues are the header values of the common ages, allocated once.
var ageValues = func() (v [120][]string) {
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}
	}
	return v
}()

func ageValue(d time.Duration) []string {
	if s := int(d / time.Second); s < len(ageValues) {
		return ageValues[s]
	}
	return []string{strconv.Itoa(int(d / time.Second))}
}

// parseFormat reads ?format=; the empty query is the common case.
func parseFormat(r *http.Request) (string, error) {
	if r.URL.RawQuery == "" {
		return FormatJSON, nil
	}
	f := r.URL.Query().Get("format")
	switch f {
	case "", FormatJSON:
		return FormatJSON, nil
	case FormatCredentialProcess, FormatEnv:
		return f, nil
	}
	// The value is not echoed: it is the caller's input, and could be anything.
	return "", &badRequest{"unknown format: use json, credential_process or env"}
}

// validUserName reports whether name could be an IAM user name.
func validUserName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+=,.@_-", r)) {
			return false
		}
	}
	return true
}

// handleCredentials serves GET /credentials/{user}. The scope is checked
// before existence, so a key without scope cannot tell which users exist.
func (s *Server) handleCredentials(w http.ResponseWriter, r *http.Request) {
	s.serveCredentials(w, r, "", false)
}

// serveCredentials serves one user's credentials, from account's cache
// when named (GET /credentials/{account}/{user}).
func (s *Server) serveCredentials(w http.ResponseWriter, r *http.Request, account string, named bool) {
	user := r.PathValue("user")
	key, err := s.authenticate(w, r)
	if err != nil {
		if key != nil {
			s.auditRead(w, r, key.Name, user, "", "", deniedOutcome(err))
		}
		s.error(w, r, err)
		return
	}
	format, err := parseFormat(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !key.Allows(user) {
		s.auditRead(w, r, key.Name, user, "", format, "forbidden")
		s.error(w, r, errForbidden)
		return
	}
	if !validUserName(user) {
		s.error(w, r, &badRequest{"invalid IAM user name"})
		return
	}
	cache, account, err := s.cacheFor(account, named, user)
	who := user // the audit names the account
	if account != "" {
		who = account + "/" + user
	}
	if err != nil {
		if errors.Is(err, errNotManaged) {
			s.metrics.CacheMiss()
			s.auditRead(w, r, key.Name, who, "", format, "not_found")
		}
		s.error(w, r, err)
		return
	}
	if !cache.Ready() {
		s.error(w, r, errNotReady)
		return
	}
	e, ok := cache.getEntry(user)
	if !ok {
		s.metrics.CacheMiss()
		if cache.Unread(user) {
			s.auditRead(w, r, key.Name, who, "", format, "unavailable")
			w.Header().Set("Retry-After", "5")
			s.error(w, r, errUnread)
			return
		}
		s.auditRead(w, r, key.Name, who, "", format, "not_found")
		s.error(w, r, errNotManaged)
		return
	}
	s.metrics.CacheHit()
	s.auditRead(w, r, key.Name, who, e.creds.AccessKeyID, format, "granted")
	w.Header()[cacheAgeHeader] = ageValue(cache.age(e))
	switch format {
	case FormatCredentialProcess:
		writeBody(w, http.StatusOK, "application/json", e.credentialProcess)
	case FormatEnv:
		writeBody(w, http.StatusOK, "text/plain; charset=utf-8", e.env)
	default:
		writeBody(w, http.StatusOK, "application/json", e.json)
	}
}

// handleList serves GET /credentials: every user the key may read.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	key, err := s.authenticate(w, r)
	if err != nil {
		if key != nil {
			s.auditRead(w, r, key.Name, "*", "", "", deniedOutcome(err))
		}
		s.error(w, r, err)
		return
	}
	format, err := parseFormat(r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if format != FormatJSON {
		s.error(w, r, &badRequest{fmt.Sprintf("format %q is for one user: use /credentials/{user}?format=%s", format, format)})
		return
	}
	if !key.List {
		s.auditRead(w, r, key.Name, "*", "", format, "forbidden")
		s.error(w, r, errListForbidden)
		return
	}
	body := make([]byte, 0, 1024)
	body = append(body, `{"Credentials":[`...)
	if s.accounts != nil {
		body, oldest, err := s.accountEntries(body, r, key, format)
		if err != nil {
			s.error(w, r, err)
			return
		}
		w.Header()[cacheAgeHeader] = ageValue(oldest)
		writeBody(w, http.StatusOK, "application/json", append(body, "]}\n"...))
		return
	}
	if !s.cache.Ready() {
		s.error(w, r, errNotReady)
		return
	}
	n := 0
	var oldest time.Duration
	for _, e := range s.cache.entries() {
		if !key.Allows(e.creds.UserName) {
			continue
		}
		oldest = max(oldest, s.cache.age(e))
		if n > 0 {
			body = append(body, ',')
		}
		body = append(body, e.json[:len(e.json)-1]...) // without its newline
		n++
		s.metrics.CacheHit()
		// One audit record per user, each on its own; the list's
		// access record follows.
		s.auditRead(nil, r, key.Name, e.creds.UserName, e.creds.AccessKeyID, format, "granted")
	}
	body = append(body, "]}\n"...)
	w.Header()[cacheAgeHeader] = ageValue(oldest)
	writeBody(w, http.StatusOK, "application/json", body)
}

// auditRead makes the audit record of one credential read. It names the
// API key, never the key itself, and the access key id, never its secret.
// With w the request's recorder, the record is left on it for the
// middleware to write, with the request's status, route and duration, once
// the request is served (one record per request); otherwise it is written
// now.
func (s *Server) auditRead(w http.ResponseWriter, r *http.Request, apiKey, user, keyID, format, outcome string) {
	if keyID == "" && user != AllUsers {
		// A denied read names a user the caller typed: if that is an API
		// key or a secret access key pasted in the wrong place, keep it
		// out of the log. ("*" is a denied list.)
		user = s.redactUser(user)
	}
	a := auditFields{apiKey: apiKey, user: user, keyID: keyID, format: format, outcome: outcome}
	if rec, ok := w.(*recorder); ok && rec.audit.outcome == "" {
		rec.audit = a
		return
	}
	s.record(r.Context(), s.audit.Handler(), slog.LevelInfo, s.clock.Now(), "credentials read",
		slog.String("api_key", a.apiKey),
		slog.String("user", a.user),
		slog.String("key_id", a.keyID),
		slog.String("remote", r.RemoteAddr),
		slog.String("format", a.format),
		slog.String("outcome", a.outcome))
}

// redactUser returns user, or a placeholder if it is not a plausible user
// name or is a secret the server knows (an API key, a secret access key).
func (s *Server) redactUser(user string) string {
	switch {
	case !validUserName(user):
		return "[invalid]"
	case s.keys.Load().lookup(user) != nil, s.cache.isSecret(user):
		return "[redacted]"
	}
	return user
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.cache.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "loading"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) metricsOpts() promhttp.HandlerOpts {
	return promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.access.Handler(), slog.LevelError)}
}

// handleMetrics serves /metrics. Series that name a user or an API key
// (metrics.LabelUser, metrics.LabelAPIKey) go only to a scrape with an API
// key, and only those its scope covers, so that /metrics cannot tell a
// stranger which users exist; api.metrics_public serves them all to anyone.
// A scrape without a key gets the rest; one with a wrong key gets 401 and
// counts as a failed attempt.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.MetricsPublic {
		s.metricsAll.ServeHTTP(w, r)
		return
	}
	if presentedKey(r) == "" {
		s.metricsPublic.ServeHTTP(w, r)
		return
	}
	key, err := s.authenticate(w, r)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if key.allUsers() {
		s.metricsAll.ServeHTTP(w, r)
		return
	}
	scoped := metrics.Filter(s.gatherer, func(label, value string) bool {
		switch label {
		case metrics.LabelUser:
			return key.Allows(value)
		case metrics.LabelAPIKey:
			return value == key.Name
		}
		return true
	})
	promhttp.HandlerFor(scoped, s.metricsOpts()).ServeHTTP(w, r)
}

// keyExpiries lists the accepted keys' expiries for keyrot_api_key_expiry_seconds.
func (s *Server) keyExpiries() []metrics.APIKeyExpiry {
	keys := s.keys.Load().keys
	out := make([]metrics.APIKeyExpiry, len(keys))
	for i, k := range keys {
		out[i] = metrics.APIKeyExpiry{Name: k.Name, Expires: k.Expires}
	}
	return out
}
