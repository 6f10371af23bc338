package apnsmock

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// DefaultMaxConcurrentStreams is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
	// advertised when Config.MaxConcurrentStreams is 0 (APNs is observed to
	// advertise between 500 and 1500).
	DefaultMaxConcurrentStreams = 1000
	// DefaultMaxRecords bounds the number of accepted pushes kept in memory
	// when Config.MaxRecords is 0.
	DefaultMaxRecords = 1_000_000
	// DefaultPerDeviceWindow is the per-device rate-limit window used when
	// Config.PerDeviceLimit > 0 and Config.PerDeviceWindow is 0.
	DefaultPerDeviceWindow = time.Minute

	maxPayloadSize       = 4096
	maxVoIPPayloadSize   = 5120
	maxCollapseIDSize    = 64
	maxDeviceTokenHexLen = 200 // Apple: "don't assume a token length"; tokens are at most 100 bytes
	providerTokenMaxAge  = time.Hour
	providerTokenMinGap  = 20 * time.Minute
	devicePathPrefix     = "/3/device/"
)

// Config configures a mock APNs server. The zero value is usable: it listens
// on 127.0.0.1:0 with no keys and no topics registered (so every push is
// rejected until AddKey and AddTopic are called).
type Config struct {
	// Addr is the TCP listen address, e.g. "127.0.0.1:0" (tests) or
	// "127.0.0.1:18443" (dev stack). Default "127.0.0.1:0".
	Addr string
	// MaxConcurrentStreams is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per
	// connection (default DefaultMaxConcurrentStreams).
	MaxConcurrentStreams uint32
	// Latency, if set, is called once per APNs request; the handler sleeps for
	// the returned duration before answering. See FixedLatency,
	// UniformLatency and ExponentialLatency.
	Latency func() time.Duration

	// Fault injection. Rates are probabilities in [0,1] applied, in this
	// order, to pushes that passed every validation: Rate500 -> 500
	// InternalServerError, Rate503 -> 503 ServiceUnavailable, RateStall ->
	// the stream never gets an answer (until the client cancels or the
	// server closes), RateReset -> the stream is reset (RST_STREAM),
	// RateDrop -> the TCP connection is closed without a response.
	Rate500   float64
	Rate503   float64
	RateStall float64
	RateReset float64
	RateDrop  float64
	// RateGoAway is the probability that a push closes its connection
	// gracefully: the response carries "Connection: close", so the HTTP/2
	// server sends GOAWAY (NO_ERROR, last stream id = the highest stream
	// received), finishes the streams in flight and then closes the
	// connection; the client opens a new one. Applied after RateDrop.
	RateGoAway float64
	// GoAwayReason, when set (e.g. "Shutdown"), answers the push that
	// triggers a GOAWAY with that APNs reason (its status, 503 for an unknown
	// reason) instead of accepting it. net/http's HTTP/2 server cannot put
	// debug data into the GOAWAY frame, so the JSON reason APNs sends there
	// travels in this response body instead.
	GoAwayReason string
	// PerDeviceLimit > 0 allows at most that many accepted pushes per device
	// token per PerDeviceWindow (fixed window, default
	// DefaultPerDeviceWindow); further pushes get 429 TooManyRequests.
	PerDeviceLimit  int
	PerDeviceWindow time.Duration

	// MaxRecords bounds the accepted pushes kept for Pushes/PushesFor (a ring
	// buffer: the oldest are dropped). 0 means DefaultMaxRecords; negative
	// disables recording (counters and OnPush still work).
	MaxRecords int
	// OnPush, if set, is called synchronously for every accepted push, after
	// it was recorded and before the 200 is sent. It must be fast and safe for
	// concurrent use.
	OnPush func(Push)
	// OnRefuse, if set, is called synchronously for every push that passed
	// validation (authentication, headers, payload, token state) and was then
	// refused by the per-device limit, the override or a random fault: a push
	// the sender got right that the provider's side turned down. Same rules as
	// OnPush.
	OnRefuse func(Push)

	// Hosts are extra DNS names or IP literals for the server certificate
	// (it always covers 127.0.0.1, ::1 and localhost), e.g. a compose
	// service name.
	Hosts []string
	// CA signs the server certificate; nil generates a fresh CA. Pass a CA
	// loaded with LoadCA to keep client trust across restarts.
	CA *CA
	// Topics and Keys are registered as if by AddTopic and AddKey.
	Topics []string
	Keys   []Key

	// ClientCAs are trusted for certificate (TLS client certificate)
	// authentication, as if by AddClientCA. The server always requests a
	// client certificate but does not require one, so token clients work
	// unchanged; see CA.IssueClientCert.
	ClientCAs []*x509.Certificate
	// Environment is "production", "sandbox" or "" (both): a client
	// certificate marked for the other environment only gets 403
	// BadCertificateEnvironment.
	Environment string

	// Now is the clock (default time.Now); tests use it to age tokens.
	Now func() time.Time
	// Logger receives connection and control events (Info) and every rejected
	// push (Debug). nil discards logs.
	Logger *slog.Logger
}

// Key is a provider-token verification key registered for a team.
type Key struct {
	TeamID string
	KeyID  string
	Public *ecdsa.PublicKey
}

// Faults is the fault-injection part of Config; it can be changed while the
// server runs with SetFaults (or POST /control/faults).
type Faults struct {
	Rate500         float64
	Rate503         float64
	RateStall       float64
	RateReset       float64
	RateDrop        float64
	RateGoAway      float64
	GoAwayReason    string
	PerDeviceLimit  int
	PerDeviceWindow time.Duration
	Latency         func() time.Duration
}

// Push is an accepted notification as the mock received it.
type Push struct {
	ApnsID     string          `json:"apns_id"`
	Token      string          `json:"token"`
	Topic      string          `json:"topic"`
	PushType   string          `json:"push_type"` // header value, or inferred from the topic when absent ("alert" for a bare bundle id)
	CollapseID string          `json:"collapse_id,omitempty"`
	Priority   int             `json:"priority"`   // effective priority: 10 when the header is absent (APNs default)
	Expiration int64           `json:"expiration"` // apns-expiration (UNIX seconds), 0 if absent
	Payload    json.RawMessage `json:"payload"`
	ReceivedAt time.Time       `json:"received_at"`      // when the request arrived, before injected latency
	TeamID     string          `json:"team_id"`          // the JWT's team, or the client certificate's OU
	KeyID      string          `json:"key_id,omitempty"` // the JWT's kid ("" with certificate auth)
	Auth       string          `json:"auth"`             // "token" or "certificate"
}

// Server is a running mock APNs endpoint. New starts it; Close stops it.
type Server struct {
	now      func() time.Time
	log      *slog.Logger
	onPush   func(Push)
	onRefuse func(Push)
	ca       *CA
	caPEM    []byte
	pool     *x509.CertPool
	ln       net.Listener
	srv      *http.Server
	url      string
	closing  chan struct{}
	once     sync.Once
	done     chan struct{}
	control  http.Handler
	metrics  *metrics

	faults atomic.Pointer[Faults]
	// override is the storm in force (override.go), nil when none.
	override   atomic.Pointer[Override]
	overridden atomic.Uint64

	keys         sync.Map // key id -> *keyEntry
	keyGen       atomic.Uint64
	topics       sync.Map // topic -> topicInfo
	unregistered sync.Map // token -> goneToken
	badTokens    sync.Map // token -> struct{}
	tokenTopics  sync.Map // token -> topic
	auth         authCache
	limiter      *deviceLimiter
	store        *pushStore
	conns        connSet
	env          string
	connsOpened  atomic.Uint64
	clientCAs    clientCAs
}

type keyEntry struct {
	teamID string
	keyID  string
	pub    *ecdsa.PublicKey
}

type goneToken struct {
	reason string
	atMs   int64
}

// New creates the mock, binds cfg.Addr and starts serving HTTPS (HTTP/2 with
// ALPN h2; HTTP/1.1 is accepted only for /control/ and /metrics). There is no
// separate Start: the server is ready when New returns.
func New(cfg Config) (*Server, error) {
	s := &Server{
		now:      cfg.Now,
		log:      cfg.Logger,
		onPush:   cfg.OnPush,
		onRefuse: cfg.OnRefuse,
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		limiter:  newDeviceLimiter(),
		store:    newPushStore(cfg.MaxRecords),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	switch cfg.Environment {
	case "", EnvProduction, EnvSandbox:
		s.env = cfg.Environment
	default:
		return nil, fmt.Errorf("apnsmock: environment %q: want production, sandbox or empty", cfg.Environment)
	}
	for _, c := range cfg.ClientCAs {
		s.AddClientCA(c)
	}
	s.SetFaults(Faults{
		Rate500: cfg.Rate500, Rate503: cfg.Rate503, RateStall: cfg.RateStall,
		RateReset: cfg.RateReset, RateDrop: cfg.RateDrop,
		RateGoAway: cfg.RateGoAway, GoAwayReason: cfg.GoAwayReason,
		PerDeviceLimit: cfg.PerDeviceLimit, PerDeviceWindow: cfg.PerDeviceWindow,
		Latency: cfg.Latency,
	})
	for _, t := range cfg.Topics {
		s.AddTopic(t)
	}
	for _, k := range cfg.Keys {
		s.AddKey(k.TeamID, k.KeyID, k.Public)
	}

	s.ca = cfg.CA
	if s.ca == nil {
		ca, err := GenerateCA()
		if err != nil {
			return nil, fmt.Errorf("apnsmock: generate CA: %w", err)
		}
		s.ca = ca
	}
	s.caPEM = s.ca.CertPEM()
	s.pool = x509.NewCertPool()
	s.pool.AddCert(s.ca.Cert)
	cert, err := s.ca.IssueServerCert(cfg.Hosts)
	if err != nil {
		return nil, fmt.Errorf("apnsmock: issue server certificate: %w", err)
	}

	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("apnsmock: listen: %w", err)
	}
	s.ln = ln
	s.url = "https://" + dialableAddr(ln.Addr())

	streams := cfg.MaxConcurrentStreams
	if streams == 0 {
		streams = DefaultMaxConcurrentStreams
	}
	s.metrics = newMetrics(s)
	s.control = s.controlHandler()

	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	s.srv = &http.Server{
		Handler:           s,
		Protocols:         protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: int(streams)},
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			// Certificate auth: ask for a client certificate, accept its
			// absence (token auth) and verify it per request (certauth.go),
			// so that a bad one gets APNs' 403 BadCertificate, not a
			// failed handshake.
			ClientAuth: tls.RequestClientCert,
		},
		ConnContext: s.connContext,
		ConnState:   s.connStateHook,
		// TLS handshake errors and the like: not interesting at Info level.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		err := s.srv.ServeTLS(ln, "", "")
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("apns-mock serve failed", "err", err)
		}
	}()
	s.log.Info("apns-mock started", "url", s.url, "max_concurrent_streams", streams)
	return s, nil
}

func dialableAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := tcp.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(tcp.Port))
}

// URL returns the base URL, e.g. "https://127.0.0.1:18443"; use it as the
// apns2 Client.Host.
func (s *Server) URL() string { return s.url }

// Addr returns the listener address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// CACertPEM returns the PEM of the CA that signed the server certificate.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CA returns the CA that signed the server certificate.
func (s *Server) CA() *CA { return s.ca }

// CertPool returns a pool holding the mock's CA, for client RootCAs.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// ClientTLSConfig returns a TLS config trusting the mock, with ALPN h2.
func (s *Server) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.pool, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
}

// AddKey accepts provider tokens (JWTs) whose header kid is keyID, whose iss
// is teamID and that are signed by the private key of pub. Re-adding a key id
// replaces it.
func (s *Server) AddKey(teamID, keyID string, pub *ecdsa.PublicKey) {
	s.keys.Store(keyID, &keyEntry{teamID: teamID, keyID: keyID, pub: pub})
	s.keyGen.Add(1)
	s.log.Info("apns-mock key added", "team_id", teamID, "key_id", keyID)
}

// RemoveKey revokes a key: tokens signed by it become InvalidProviderToken,
// also on connections that already use them.
func (s *Server) RemoveKey(keyID string) {
	s.keys.Delete(keyID)
	s.keyGen.Add(1)
}

// AddTopic accepts pushes for a bundle id and its push-type topic variants
// (.voip, .voip-ptt, .complication, .pushkit.fileprovider, .location-query,
// .push-type.liveactivity). A topic given with such a suffix registers its
// bundle id. Pushes to other topics get 400 TopicDisallowed.
func (s *Server) AddTopic(topic string) {
	base, _ := splitTopic(topic)
	s.topics.Store(base, topicInfo{base: base})
	for _, st := range topicSuffixes {
		s.topics.Store(base+st.suffix, topicInfo{base: base, pushType: st.pushType})
	}
}

// Unregister makes pushes to token fail with 410 Unregistered and the given
// time as the millisecond "timestamp" (when APNs learnt the token is invalid).
func (s *Server) Unregister(token string, at time.Time) {
	s.unregistered.Store(token, goneToken{reason: ReasonUnregistered, atMs: at.UnixMilli()})
}

// ExpireToken makes pushes to token fail with 410 ExpiredToken and a timestamp.
func (s *Server) ExpireToken(token string, at time.Time) {
	s.unregistered.Store(token, goneToken{reason: ReasonExpiredToken, atMs: at.UnixMilli()})
}

// Reregister undoes Unregister/ExpireToken/SetBadToken for token.
func (s *Server) Reregister(token string) {
	s.unregistered.Delete(token)
	s.badTokens.Delete(token)
}

// SetBadToken makes pushes to token fail with 400 BadDeviceToken (e.g. a
// sandbox token sent to production).
func (s *Server) SetBadToken(token string) { s.badTokens.Store(token, struct{}{}) }

// SetTokenTopic binds token to one topic: pushes to it with any other topic
// get 400 DeviceTokenNotForTopic. Unbound tokens accept every known topic.
func (s *Server) SetTokenTopic(token, topic string) { s.tokenTopics.Store(token, topic) }

// Pushes returns the recorded accepted pushes in arrival order.
func (s *Server) Pushes() []Push { return s.store.all("") }

// PushesFor returns the recorded accepted pushes for one device token.
func (s *Server) PushesFor(token string) []Push { return s.store.all(token) }

// Accepted returns the number of pushes accepted since start or Reset,
// including those no longer kept in memory.
func (s *Server) Accepted() uint64 { return s.store.accepted() }

// Reset forgets recorded pushes, unregistered/bad tokens, token-topic bindings
// and per-device rate-limit state. Keys, topics, faults and the per-connection
// JWT state are kept; Prometheus counters keep counting.
func (s *Server) Reset() {
	s.store.reset()
	s.unregistered.Clear()
	s.badTokens.Clear()
	s.tokenTopics.Clear()
	s.limiter.reset()
	s.log.Info("apns-mock reset")
}

// SetFaults replaces the fault-injection settings.
func (s *Server) SetFaults(f Faults) {
	if f.PerDeviceLimit > 0 && f.PerDeviceWindow <= 0 {
		f.PerDeviceWindow = DefaultPerDeviceWindow
	}
	s.faults.Store(&f)
}

// Faults returns the current fault-injection settings.
func (s *Server) Faults() Faults { return *s.faults.Load() }

// DropConnections closes every open client connection abruptly (no GOAWAY)
// and returns how many were closed.
func (s *Server) DropConnections() int { return s.conns.closeAll(nil) }

// GoAway makes every open connection close gracefully after its next
// response: that response carries "Connection: close", the HTTP/2 server
// sends GOAWAY (NO_ERROR), finishes the streams in flight and closes the
// connection. It returns how many connections were marked. Idle connections
// are not closed until they carry another request.
func (s *Server) GoAway() int {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	for _, cs := range s.conns.m {
		cs.goAway.Store(true)
	}
	return len(s.conns.m)
}

// ConnectionsOpened returns the number of client connections accepted since
// start.
func (s *Server) ConnectionsOpened() uint64 { return s.connsOpened.Load() }

// OpenConnections returns the number of open client connections.
func (s *Server) OpenConnections() int { return s.conns.len() }

// Close stops the server: stalled streams are answered 503 Shutdown, HTTP/2
// connections get GOAWAY, and after 5 s the remaining connections are closed.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = s.srv.Close()
		}
		<-s.done
		s.log.Info("apns-mock stopped", "url", s.url)
	})
	return err
}

type topicInfo struct {
	base     string
	pushType string // push type the topic requires; "" for the bare bundle id
}

var topicSuffixes = []struct{ suffix, pushType string }{
	{".voip", "voip"},
	{".voip-ptt", "pushtotalk"},
	{".complication", "complication"},
	{".pushkit.fileprovider", "fileprovider"},
	{".location-query", "location"},
	{".push-type.liveactivity", "liveactivity"},
}

// pushTypes lists the apns-push-type values the mock knows; the value says
// whether the type needs a suffixed topic.
var pushTypes = map[string]bool{
	"alert":        false,
	"background":   false,
	"mdm":          false,
	"voip":         true,
	"pushtotalk":   true,
	"complication": true,
	"fileprovider": true,
	"location":     true,
	"liveactivity": true,
}

func splitTopic(topic string) (base, pushType string) {
	for _, st := range topicSuffixes {
		if b, ok := strings.CutSuffix(topic, st.suffix); ok && b != "" {
			return b, st.pushType
		}
	}
	return topic, ""
}

func (s *Server) lookupTopic(topic string) (topicInfo, bool) {
	v, ok := s.topics.Load(topic)
	if !ok {
		return topicInfo{}, false
	}
	return v.(topicInfo), true
}
