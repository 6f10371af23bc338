// Package fcmmock is a mock of Firebase Cloud Messaging's HTTP v1 API and of Google's OAuth2
// token endpoint, for tests and load tests of the wakepush sender (facts it honours:
// /work/shared/domain/apns-fcm.md, i.e. docs/domain in the monorepo).
//
// New binds Config.Addr and serves HTTPS (HTTP/2 with ALPN, HTTP/1.1 too) with a self-signed
// certificate for 127.0.0.1, ::1, localhost and Config.Hosts, right away:
//
//	srv, _ := fcmmock.New(fcmmock.Config{ProjectID: "wakepush-test"})
//	defer srv.Close()
//	saJSON, _ := srv.NewServiceAccount("wakepush-test") // token_uri = srv.TokenURL()
//	// a client trusts srv.CertPool() and posts to srv.URL()+"/v1/projects/wakepush-test/messages:send"
//
// # Endpoints
//
//   - POST /token: OAuth2 JWT-bearer grant (RFC 7523) as Google's token endpoint takes it:
//     grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion = an RS256 JWT signed
//     with a service account key this mock generated (NewServiceAccount), kid = its
//     private_key_id, iss = its client_email, aud = the token URL, scope including
//     firebase.messaging, iat/exp at most 1 h apart and not expired. Answers
//     {"access_token","expires_in","token_type":"Bearer"}, or 400 {"error":"invalid_grant"}.
//   - POST /v1/projects/{project}/messages:send: FCM HTTP v1. Validation order: method (405),
//     path (404 NOT_FOUND), bearer token issued here and not expired (401 UNAUTHENTICATED), the
//     token's project = {project} (403 PERMISSION_DENIED), JSON body with message.token, string
//     data values, android.priority normal|high, android.ttl "<seconds>s", data ≤ 4096 bytes
//     (400 INVALID_ARGUMENT), the registration token's state (SetInvalid → 400
//     INVALID_ARGUMENT, Unregister → 404 UNREGISTERED, SetSenderMismatch → 403
//     SENDER_ID_MISMATCH, SetThirdPartyAuthError → 401 THIRD_PARTY_AUTH_ERROR), the per-device
//     limit (429 QUOTA_EXCEEDED + Retry-After), then injected faults (500 INTERNAL, 503
//     UNAVAILABLE, 429 QUOTA_EXCEEDED, the last two with Retry-After), latency, and 200
//     {"name":"projects/{project}/messages/{id}"}. validate_only: true answers 200 without
//     recording.
//   - Errors have FCM's JSON shape: {"error":{"code":404,"message":"…","status":"NOT_FOUND",
//     "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError",
//     "errorCode":"UNREGISTERED"}]}}.
//   - /control/...: healthz, messages[?token=], reset, faults (GET/POST), unregister,
//     reregister, invalid, mismatch, third-party-auth (POST {"token":"…"}); /metrics
//     (Prometheus: fcmmock_requests_total{status,code}, fcmmock_tokens_issued_total,
//     fcmmock_faults_injected_total{kind}).
package fcmmock

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

// DefaultProjectID is the project of a zero Config.
const DefaultProjectID = "wakepush-test"

// Config configures a mock. The zero value is usable.
type Config struct {
	// Addr is the TCP listen address (default 127.0.0.1:0).
	Addr string
	// ProjectID names the default project (documentation only: every project a service
	// account was made for is served).
	ProjectID string
	// Hosts are extra names or IPs for the certificate.
	Hosts []string
	// MaxConcurrentStreams per HTTP/2 connection (default 1000).
	MaxConcurrentStreams uint32
	// TokenLifetime of issued access tokens (default 1 h).
	TokenLifetime time.Duration
	// MaxRecords bounds the accepted messages kept (ring; default 100000, negative: none).
	MaxRecords int
	// Faults at start; change them with SetFaults or POST /control/faults.
	Faults Faults
	// OnRefuse, if set, is called synchronously for every message that passed validation and
	// the token's state and was then refused by a rate limit or a random fault. It must be
	// fast and safe for concurrent use.
	OnRefuse func(Message)
	// Now is the clock (default time.Now): token expiry and JWT checks use it.
	Now func() time.Time
	// Logger receives control events; nil discards.
	Logger *slog.Logger
}

// Faults is the fault injection, applied in this order to messages that passed validation.
type Faults struct {
	Rate500 float64 `json:"rate_500"` // 500 INTERNAL
	Rate503 float64 `json:"rate_503"` // 503 UNAVAILABLE (+ Retry-After)
	Rate429 float64 `json:"rate_429"` // 429 QUOTA_EXCEEDED (+ Retry-After)
	// RetryAfter is the Retry-After of 503/429 answers, whole seconds (0: header omitted).
	RetryAfter int `json:"retry_after"`
	// PerDeviceLimit > 0 accepts at most that many messages per registration token per
	// PerDeviceWindow (fixed window, default 1 min; FCM's is 240/min); more get 429
	// QUOTA_EXCEEDED with Retry-After. In JSON (/control/faults) the window is nanoseconds.
	PerDeviceLimit  int           `json:"per_device_limit"`
	PerDeviceWindow time.Duration `json:"per_device_window"`
	// Latency, if set, delays each answer.
	Latency func() time.Duration `json:"-"`
}

// Message is an accepted message as the mock received it.
type Message struct {
	Name        string            `json:"name"`
	Project     string            `json:"project"`
	Token       string            `json:"token"`
	Data        map[string]string `json:"data,omitempty"`
	Priority    string            `json:"priority"` // android.priority as sent ("" if absent)
	TTL         string            `json:"ttl,omitempty"`
	CollapseKey string            `json:"collapse_key,omitempty"`
	// Notification is true when the message had a notification block (not data-only).
	Notification bool      `json:"notification"`
	Account      string    `json:"account"` // client_email of the service account
	ReceivedAt   time.Time `json:"received_at"`
}

// Server is a running mock.
type Server struct {
	cfg    Config
	now    func() time.Time
	ln     net.Listener
	srv    *http.Server
	url    string
	caPEM  []byte
	pool   *x509.CertPool
	log    *slog.Logger
	faults atomic.Pointer[Faults]
	m      *metrics

	accounts sync.Map // private_key_id -> *account
	tokens   sync.Map // access token -> *issued
	states   sync.Map // registration token -> tokenState

	mu       sync.Mutex
	records  []Message
	next     int // ring position when full
	rates    map[string]*window
	accepted atomic.Uint64
	seq      atomic.Uint64
}

type tokenState int

const (
	stateInvalid tokenState = iota + 1
	stateUnregistered
	stateMismatch
	stateThirdParty
)

type window struct {
	start time.Time
	n     int
}

// New starts a mock.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ProjectID == "" {
		cfg.ProjectID = DefaultProjectID
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = 1000
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = 100_000
	}
	s := &Server{cfg: cfg, now: cfg.Now, log: cfg.Logger, rates: map[string]*window{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	f := cfg.Faults
	s.faults.Store(&f)
	s.m = newMetrics()

	// The same kind of test CA and server certificate as the APNs mock.
	ca, err := apnsmock.GenerateCA()
	if err != nil {
		return nil, err
	}
	cert, err := ca.IssueServerCert(cfg.Hosts)
	if err != nil {
		return nil, err
	}
	certPEM := ca.CertPEM()
	s.caPEM = certPEM
	s.pool = x509.NewCertPool()
	s.pool.AppendCertsFromPEM(certPEM)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.url = "https://" + dialableAddr(ln.Addr())
	s.srv = &http.Server{
		Handler:           s.handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(cfg.MaxConcurrentStreams)},
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("fcm-mock serve", "err", err)
		}
	}()
	return s, nil
}

func dialableAddr(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// URL is the base URL (the sender's fcm.endpoint).
func (s *Server) URL() string { return s.url }

// TokenURL is the OAuth2 token endpoint (service accounts' token_uri).
func (s *Server) TokenURL() string { return s.url + "/token" }

// SendURL is the messages:send URL of project.
func (s *Server) SendURL(project string) string {
	return s.url + "/v1/projects/" + project + "/messages:send"
}

// Addr is the listen address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// CACertPEM is the PEM certificate clients must trust (fcm.ca_file).
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CertPool trusts the mock.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// ClientTLSConfig trusts the mock.
func (s *Server) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
}

// Unregister makes token answer 404 UNREGISTERED (the app was uninstalled).
func (s *Server) Unregister(token string) { s.states.Store(token, stateUnregistered) }

// SetSenderMismatch makes token answer 403 SENDER_ID_MISMATCH.
func (s *Server) SetSenderMismatch(token string) { s.states.Store(token, stateMismatch) }

// SetInvalid makes token answer 400 INVALID_ARGUMENT.
func (s *Server) SetInvalid(token string) { s.states.Store(token, stateInvalid) }

// SetThirdPartyAuthError makes token answer 401 THIRD_PARTY_AUTH_ERROR.
func (s *Server) SetThirdPartyAuthError(token string) { s.states.Store(token, stateThirdParty) }

// Reregister clears any state of token: it is accepted again.
func (s *Server) Reregister(token string) { s.states.Delete(token) }

// Messages returns the accepted messages kept, oldest first.
func (s *Server) Messages() []Message { return s.messages("") }

// MessagesFor returns the accepted messages to token, oldest first.
func (s *Server) MessagesFor(token string) []Message { return s.messages(token) }

func (s *Server) messages(token string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Message{}
	n := len(s.records)
	for i := range n {
		m := s.records[(s.next+i)%n]
		if token == "" || m.Token == token {
			out = append(out, m)
		}
	}
	return out
}

// Accepted counts accepted messages since start or Reset.
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

// Reset forgets messages, token states, rate windows and faults (not accounts or issued
// access tokens).
func (s *Server) Reset() {
	s.mu.Lock()
	s.records, s.next, s.rates = nil, 0, map[string]*window{}
	s.mu.Unlock()
	s.accepted.Store(0)
	s.states.Clear()
	s.faults.Store(&Faults{})
}

// SetFaults replaces the fault injection.
func (s *Server) SetFaults(f Faults) { s.faults.Store(&f) }

// Faults returns the fault injection.
func (s *Server) Faults() Faults { return *s.faults.Load() }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

func (s *Server) record(m Message) {
	s.accepted.Add(1)
	if s.cfg.MaxRecords < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.records) < s.cfg.MaxRecords {
		s.records = append(s.records, m)
		return
	}
	s.records[s.next] = m
	s.next = (s.next + 1) % len(s.records)
}

// allow counts a message to token in the per-device window.
func (s *Server) allow(token string, f *Faults) bool {
	if f.PerDeviceLimit <= 0 {
		return true
	}
	win := f.PerDeviceWindow
	if win <= 0 {
		win = time.Minute
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.rates[token]
	if w == nil || now.Sub(w.start) >= win {
		w = &window{start: now}
		s.rates[token] = w
	}
	if w.n >= f.PerDeviceLimit {
		return false
	}
	w.n++
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func chance(p float64) bool { return p > 0 && mrand.Float64() < p }
