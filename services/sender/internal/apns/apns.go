// Package apns delivers wakes to Apple Push Notification service with sideshow/apns2 and token
// (p8/JWT) or certificate (TLS client certificate) authentication: one HTTP/2 client per app and
// environment on our own transport, one shared JWT per signing key, one loaded certificate per
// certificate file, the per-app payload (payload.go) and the classification of every APNs answer
// (classify.go).
package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/token"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/net/http2"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/redact"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// Options tune the APNs clients.
type Options struct {
	// Timeout bounds one push request (PushWithContext deadline).
	Timeout time.Duration
	// Expiry sets apns-expiration.
	Expiry Expiry
	// ReadIdleTimeout: after this long without a frame on a connection, send a PING.
	ReadIdleTimeout time.Duration
	// PingTimeout: close the connection when a PING is not answered within this.
	PingTimeout time.Duration
	// IdleConnTimeout closes connections that carried no request for this long.
	IdleConnTimeout time.Duration
	// DialTimeout bounds TCP connect + TLS handshake.
	DialTimeout time.Duration
	// Connections is the number of HTTP/2 connections per app and environment (default 1):
	// each is its own apns2 client and transport, used round-robin, all sharing the key's JWT.
	// One connection carries up to the server's stream limit; more spread the TLS and HTTP/2
	// framing work over cores (README.md, "Performance").
	Connections int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultOptions are the defaults main registers.
var DefaultOptions = Options{
	Timeout:         10 * time.Second,
	Expiry:          DefaultExpiry,
	ReadIdleTimeout: 15 * time.Second,
	PingTimeout:     5 * time.Second,
	IdleConnTimeout: 5 * time.Minute,
	DialTimeout:     10 * time.Second,
	Connections:     1,
}

// minTokenRefresh is how young a JWT may be when APNs calls it expired and we make a new one:
// changing the token more than once per 20 min on a connection earns 429
// TooManyProviderTokenUpdates.
const minTokenRefresh = 20 * time.Minute

// Pool is the APNs provider: a client per (app, environment).
type Pool struct {
	opts    Options
	clients map[clientKey]*client
}

type clientKey struct {
	app string
	env wakepushv1.Environment
}

type client struct {
	conns []conn
	next  atomic.Uint32
	tok   *token.Token // nil with certificate auth
}

// conn is one HTTP/2 connection's client (its transport keeps a single connection: APNs
// allows far more streams than one sender uses per connection).
type conn struct {
	c         *apns2.Client
	transport *http2.Transport
}

// pick returns the next connection round-robin.
func (c *client) pick() *apns2.Client {
	if len(c.conns) == 1 {
		return c.conns[0].c
	}
	return c.conns[int(c.next.Add(1))%len(c.conns)].c
}

var _ provider.Provider = (*Pool)(nil)

// Validate reports, with the app's id, every APNs setting of app that cannot work: an unreadable
// or unparsable key file, certificate or certificate password, an expired certificate, an
// unreadable CA file, an endpoint that is not an https URL.
func Validate(app *apps.App, chk *config.Check) {
	if app.Platform != "apns" || app.APNs == nil {
		return
	}
	a := app.APNs
	if a.CertificateAuth() {
		cert, err := LoadCertificate(a)
		switch {
		case err != nil:
			chk.Add(fmt.Errorf("app %q: %w", app.ID, err))
		case cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter):
			chk.Add(fmt.Errorf("app %q: apns.certificate_file %s: expired on %s", app.ID, a.CertificateFile, cert.Leaf.NotAfter.UTC().Format(time.DateOnly)))
		}
	} else if _, err := token.AuthKeyFromFile(a.KeyFile); err != nil {
		chk.Add(fmt.Errorf("app %q: apns.key_file %s: %w", app.ID, a.KeyFile, err))
	}
	if a.CAFile != "" {
		if _, err := provider.CertPool(a.CAFile); err != nil {
			chk.Add(fmt.Errorf("app %q: apns.ca_file: %w", app.ID, err))
		}
	}
	if a.Endpoint != "" {
		u, err := url.Parse(a.Endpoint)
		chk.Require(err == nil && u.Scheme == "https" && u.Host != "" && (u.Path == "" || u.Path == "/"),
			"app %q: apns.endpoint %q: want https://host[:port]", app.ID, a.Endpoint)
	}
}

// New builds the clients of every APNs app. Connections open on first use.
func New(list []*apps.App, opts Options) (*Pool, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Pool{opts: opts, clients: map[clientKey]*client{}}
	type keyID struct{ team, kid, file string }
	tokens := map[keyID]*token.Token{}
	type certID struct{ file, password string }
	certs := map[certID]*tls.Certificate{}
	for _, app := range list {
		if app.Platform != "apns" || app.APNs == nil {
			continue
		}
		a := app.APNs
		var tok *token.Token
		var cert *tls.Certificate
		if a.CertificateAuth() {
			k := certID{a.CertificateFile, a.CertificatePasswordFile}
			if cert = certs[k]; cert == nil {
				c, err := LoadCertificate(a)
				if err != nil {
					return nil, fmt.Errorf("app %q: %w", app.ID, err)
				}
				cert = &c
				certs[k] = cert
			}
		} else if tok = tokens[keyID{a.TeamID, a.KeyID, a.KeyFile}]; tok == nil {
			key, err := token.AuthKeyFromFile(a.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("app %q: apns.key_file %s: %w", app.ID, a.KeyFile, err)
			}
			tok = &token.Token{AuthKey: key, KeyID: a.KeyID, TeamID: a.TeamID}
			tokens[keyID{a.TeamID, a.KeyID, a.KeyFile}] = tok
		}
		var roots *x509.CertPool
		if a.CAFile != "" {
			var err error
			if roots, err = provider.CertPool(a.CAFile); err != nil {
				return nil, fmt.Errorf("app %q: apns.ca_file: %w", app.ID, err)
			}
		}
		for _, env := range []wakepushv1.Environment{wakepushv1.Environment_ENVIRONMENT_PRODUCTION, wakepushv1.Environment_ENVIRONMENT_SANDBOX} {
			host := a.Endpoint
			if host == "" {
				host = apns2.HostProduction
				if env == wakepushv1.Environment_ENVIRONMENT_SANDBOX {
					host = apns2.HostDevelopment
				}
			}
			p.clients[clientKey{app.ID, env}] = newClient(app, env, host, auth{tok, cert}, roots, opts)
		}
	}
	return p, nil
}

// auth is how a client authenticates: a provider token (JWT) or a TLS client certificate.
type auth struct {
	tok  *token.Token
	cert *tls.Certificate
}

// LoadCertificate reads an app's APNs client certificate: a .p12/.pfx (PKCS#12) or a PEM file
// with the certificate and its private key, decrypted with the password in
// certificate_password_file when set.
func LoadCertificate(a *apps.APNs) (tls.Certificate, error) {
	var password string
	if a.CertificatePasswordFile != "" {
		b, err := os.ReadFile(a.CertificatePasswordFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("apns.certificate_password_file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	var cert tls.Certificate
	var err error
	switch strings.ToLower(filepath.Ext(a.CertificateFile)) {
	case ".p12", ".pfx":
		cert, err = certificate.FromP12File(a.CertificateFile, password)
	default:
		cert, err = certificate.FromPemFile(a.CertificateFile, password)
	}
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("apns.certificate_file %s: %w", a.CertificateFile, err)
	}
	return cert, nil
}

func newClient(app *apps.App, env wakepushv1.Environment, host string, au auth, roots *x509.CertPool, opts Options) *client {
	c := &client{tok: au.tok}
	for range max(opts.Connections, 1) {
		c.conns = append(c.conns, newConn(app, env, host, au, roots, opts))
	}
	return c
}

func newConn(app *apps.App, env wakepushv1.Environment, host string, au auth, roots *x509.CertPool, opts Options) conn {
	nd := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 15 * time.Second}
	tlsConf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	ac := &apns2.Client{Host: host, Token: au.tok}
	if au.cert != nil {
		// Certificate auth: the certificate goes into our transport's TLS config (as
		// apns2.NewClient would do with its own transport); each connection carries it.
		tlsConf.Certificates = []tls.Certificate{*au.cert}
		ac.Certificate = *au.cert
	}
	t := &http2.Transport{
		TLSClientConfig: tlsConf,
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			return (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, network, addr)
		},
		ReadIdleTimeout: opts.ReadIdleTimeout,
		PingTimeout:     opts.PingTimeout,
		IdleConnTimeout: opts.IdleConnTimeout,
	}
	// The client span of each provider call (no trace headers are sent to Apple).
	rt := provider.TraceTransport(t, func(*http.Request) string { return "apns push" },
		attribute.String("wakepush.app", app.ID),
		attribute.String("wakepush.environment", env.String()),
	)
	// No http.Client timeout: each request carries its own deadline.
	ac.HTTPClient = &http.Client{Transport: rt}
	return conn{c: ac, transport: t}
}

// ErrNoClient is returned (as Result.Err, action Configuration) when a target's app has no
// APNs client.
var ErrNoClient = errors.New("apns: no client for app")

// Send pushes one wake. It never retries; the result says what to do.
func (p *Pool) Send(ctx context.Context, t provider.Target, w *wakepushv1.Wake) provider.Result {
	env := t.Environment
	if env != wakepushv1.Environment_ENVIRONMENT_SANDBOX {
		env = wakepushv1.Environment_ENVIRONMENT_PRODUCTION
	}
	c := p.clients[clientKey{t.App.ID, env}]
	if c == nil {
		return provider.Result{Action: provider.Configuration, Reason: "no_client", Err: fmt.Errorf("%w %q", ErrNoClient, t.App.ID)}
	}
	now := p.opts.Now()
	n, err := Notification(t.App, t.Token, w, p.opts.Expiry, now)
	if err != nil {
		return provider.Result{Action: provider.Drop, Reason: "payload", Err: redact.Error(err, t.Token)}
	}
	rctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	start := time.Now()
	resp, err := c.pick().PushWithContext(rctx, n)
	res := provider.Result{Latency: time.Since(start), MessageID: n.ApnsID}
	if err != nil {
		// The error of an HTTP request names its URL, which ends in the device token.
		res.Action, res.Reason, res.Err = provider.Retry, ClassifyError(ctx, err), redact.Error(err, t.Token)
		return res
	}
	res.StatusCode, res.Reason = resp.StatusCode, resp.Reason
	if resp.ApnsID != "" {
		res.MessageID = resp.ApnsID
	}
	res.Action = Classify(resp.StatusCode, resp.Reason)
	switch {
	case res.Action == provider.Permanent:
		// 410 carries since when the token is invalid; 400s do not, so the request time stands
		// in: a device that registers after we sent this is not unregistered.
		res.InvalidAt = now
		if !resp.Timestamp.IsZero() {
			res.InvalidAt = resp.Timestamp.Time
		}
	case resp.Reason == apns2.ReasonTooManyRequests:
		res.DeviceRateLimited = true
	case resp.Reason == apns2.ReasonExpiredProviderToken && c.tok != nil:
		c.refreshToken(now)
	}
	return res
}

// refreshToken makes a new JWT after APNs called ours expired, unless ours is younger than
// minTokenRefresh (then the clocks disagree, and a new token would only earn
// TooManyProviderTokenUpdates; apns2 itself renews after 50 min).
func (c *client) refreshToken(now time.Time) {
	c.tok.Lock()
	defer c.tok.Unlock()
	if now.Sub(time.Unix(c.tok.IssuedAt, 0)) >= minTokenRefresh {
		_, _ = c.tok.Generate() // fails only without a key, which New rules out
	}
}

// Close closes idle connections of every client.
func (p *Pool) Close() {
	for _, c := range p.clients {
		for _, cn := range c.conns {
			cn.transport.CloseIdleConnections()
		}
	}
}
