// Package fcm delivers wakes to Firebase Cloud Messaging through the HTTP v1 API
// (POST /v1/projects/{project}/messages:send) with a service account's OAuth2 token per app:
// a data-only, high-priority message with a short TTL and a per-device collapse key, and the
// classification of every FCM answer (classify.go).
//
// It is a direct HTTP v1 client on golang.org/x/oauth2/jwt rather than
// firebase.google.com/go/v4/messaging: the SDK retries 503 and network errors itself (up to 4
// times, its own backoff, not configurable), which would hide attempts from the engine's
// bounded, recorded retries and its per-device backoff; and its Retry-After is only reachable
// through the error's *http.Response. The request it sends is the same JSON.
package fcm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/redact"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// DefaultEndpoint is FCM's API host.
const DefaultEndpoint = "https://fcm.googleapis.com"

// Scope is the OAuth2 scope of FCM HTTP v1.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// defaultTokenURI is Google's token endpoint, for service accounts without token_uri.
const defaultTokenURI = "https://oauth2.googleapis.com/token"

// Options tune the FCM clients.
type Options struct {
	// Timeout bounds one send (token fetch included).
	Timeout time.Duration
	// TTL is android.ttl of ordinary wakes; UrgentTTL of urgent ones (calls).
	TTL, UrgentTTL time.Duration
	// IdleConnTimeout closes connections unused this long.
	IdleConnTimeout time.Duration
	// ReadIdleTimeout / PingTimeout: HTTP/2 health checks.
	ReadIdleTimeout, PingTimeout time.Duration
	// DialTimeout bounds TCP connect + TLS handshake.
	DialTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultOptions are the defaults main registers.
var DefaultOptions = Options{
	Timeout:         10 * time.Second,
	TTL:             10 * time.Minute,
	UrgentTTL:       30 * time.Second,
	IdleConnTimeout: 5 * time.Minute,
	ReadIdleTimeout: 15 * time.Second,
	PingTimeout:     5 * time.Second,
	DialTimeout:     10 * time.Second,
}

// Pool is the FCM provider: a client per app.
type Pool struct {
	opts    Options
	clients map[string]*client
}

var _ provider.Provider = (*Pool)(nil)

type client struct {
	url       string
	http      *http.Client
	transport *http.Transport
	conf      *jwt.Config
	tokCtx    context.Context // carries the HTTP client for the token endpoint
	ts        atomic.Pointer[oauth2.TokenSource]
}

// ServiceAccount is the part of a Google service account key file the sender uses.
type ServiceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// ReadServiceAccount reads and checks a service account key file.
func ReadServiceAccount(file string) (*ServiceAccount, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var sa ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, fmt.Errorf("not a service account JSON: %w", err)
	}
	if sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" {
		return nil, errors.New("want a service account key (type service_account, client_email, private_key)")
	}
	// Parse the key now, so a broken file fails at start-up, not at the first wake.
	blk, _ := pem.Decode([]byte(sa.PrivateKey))
	if blk == nil {
		return nil, errors.New("private_key is not PEM")
	}
	if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
		if _, err1 := x509.ParsePKCS1PrivateKey(blk.Bytes); err1 != nil {
			return nil, fmt.Errorf("private_key: %w", err)
		}
	}
	if sa.TokenURI == "" {
		sa.TokenURI = defaultTokenURI
	}
	return &sa, nil
}

// Validate reports, with the app's id, every FCM setting of app that cannot work.
func Validate(app *apps.App, chk *config.Check) {
	if app.Platform != "fcm" || app.FCM == nil {
		return
	}
	f := app.FCM
	if f.CredentialsFile == "" {
		chk.Add(fmt.Errorf("app %q: fcm.credentials_file is required (a service account key)", app.ID))
	} else if _, err := ReadServiceAccount(f.CredentialsFile); err != nil {
		chk.Add(fmt.Errorf("app %q: fcm.credentials_file %s: %w", app.ID, f.CredentialsFile, err))
	}
	if f.CAFile != "" {
		if _, err := provider.CertPool(f.CAFile); err != nil {
			chk.Add(fmt.Errorf("app %q: fcm.ca_file: %w", app.ID, err))
		}
	}
	if f.Endpoint != "" {
		u, err := url.Parse(f.Endpoint)
		chk.Require(err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && (u.Path == "" || u.Path == "/"),
			"app %q: fcm.endpoint %q: want https://host[:port]", app.ID, f.Endpoint)
	}
}

// New builds the client of every FCM app. Connections and OAuth2 tokens are made on first use.
func New(list []*apps.App, opts Options) (*Pool, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Pool{opts: opts, clients: map[string]*client{}}
	for _, app := range list {
		if app.Platform != "fcm" || app.FCM == nil {
			continue
		}
		f := app.FCM
		sa, err := ReadServiceAccount(f.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("app %q: fcm.credentials_file %s: %w", app.ID, f.CredentialsFile, err)
		}
		var roots *x509.CertPool
		if f.CAFile != "" {
			if roots, err = provider.CertPool(f.CAFile); err != nil {
				return nil, fmt.Errorf("app %q: fcm.ca_file: %w", app.ID, err)
			}
		}
		endpoint := strings.TrimSuffix(f.Endpoint, "/")
		if endpoint == "" {
			endpoint = DefaultEndpoint
		}
		nd := &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 15 * time.Second}
		t := &http.Transport{
			DialContext:         nd.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     opts.IdleConnTimeout,
			TLSHandshakeTimeout: opts.DialTimeout,
			HTTP2:               &http.HTTP2Config{SendPingTimeout: opts.ReadIdleTimeout, PingTimeout: opts.PingTimeout},
		}
		rt := provider.TraceTransport(t, func(r *http.Request) string {
			if strings.HasSuffix(r.URL.Path, ":send") {
				return "fcm send"
			}
			return "fcm oauth2 token"
		}, attribute.String("wakepush.app", app.ID))
		hc := &http.Client{Transport: rt}
		c := &client{
			url:       endpoint + "/v1/projects/" + url.PathEscape(f.ProjectID) + "/messages:send",
			http:      hc,
			transport: t,
			conf: &jwt.Config{
				Email: sa.ClientEmail, PrivateKey: []byte(sa.PrivateKey), PrivateKeyID: sa.PrivateKeyID,
				Scopes: []string{Scope}, TokenURL: sa.TokenURI,
			},
			// The token fetch has its own bound: it runs outside any one send's context.
			tokCtx: context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: rt, Timeout: opts.Timeout}),
		}
		c.resetToken()
		p.clients[app.ID] = c
	}
	return p, nil
}

// resetToken drops the cached access token: the next send fetches a new one.
func (c *client) resetToken() {
	ts := c.conf.TokenSource(c.tokCtx) // a ReuseTokenSource: refreshes shortly before expiry
	c.ts.Store(&ts)
}

// Message is the HTTP v1 request body.
type Message struct {
	Message MessageBody `json:"message"`
}

// MessageBody is FCM's Message: a data-only message to one registration token.
type MessageBody struct {
	Token   string            `json:"token"`
	Data    map[string]string `json:"data"`
	Android Android           `json:"android"`
}

// Android is FCM's AndroidConfig as the sender sets it.
type Android struct {
	// Priority "high": delivered at once, waking the device from Doze (normal ones wait for
	// a maintenance window). FCM may deprioritise apps whose high-priority messages never show
	// a notification; see README.md.
	Priority    string `json:"priority"`
	TTL         string `json:"ttl"`
	CollapseKey string `json:"collapse_key,omitempty"`
}

// Build makes the FCM message for a wake to a device. Data only (no notification block: the
// app's FirebaseMessagingService fetches from the XMPP server), never message content.
func Build(token, deviceID string, w *wakepushv1.Wake, opts Options) Message {
	data := map[string]string{"wake_id": w.GetId()}
	ttl := opts.TTL
	if w.GetUrgent() {
		data["urgent"] = "1"
		ttl = opts.UrgentTTL
	}
	return Message{Message: MessageBody{
		Token: token,
		Data:  data,
		Android: Android{
			Priority:    "high",
			TTL:         fmt.Sprintf("%ds", int64(ttl/time.Second)),
			CollapseKey: CollapseKey(deviceID),
		},
	}}
}

// CollapseKey is stable per device: an offline device keeps only the newest wake.
func CollapseKey(deviceID string) string {
	sum := sha256.Sum256([]byte(deviceID))
	return "wp-" + hex.EncodeToString(sum[:16])
}

// ErrNoClient is returned (as Result.Err, action Configuration) when a target's app has no FCM
// client.
var ErrNoClient = errors.New("fcm: no client for app")

// Transport error classes (Result.Reason when FCM gave no answer).
const (
	ReasonTimeout       = provider.ReasonTimeout
	ReasonCanceled      = provider.ReasonCanceled
	ReasonNetwork       = provider.ReasonNetwork
	ReasonBadResponse   = "bad_response"
	ReasonOAuthRejected = "oauth_rejected" // the token endpoint refused our service account
)

// Send pushes one wake. It never retries; the result says what to do.
func (p *Pool) Send(ctx context.Context, t provider.Target, w *wakepushv1.Wake) provider.Result {
	c := p.clients[t.App.ID]
	if c == nil {
		return provider.Result{Action: provider.Configuration, Reason: "no_client", Err: fmt.Errorf("%w %q", ErrNoClient, t.App.ID)}
	}
	body, err := json.Marshal(Build(t.Token, t.DeviceID, w, p.opts))
	if err != nil {
		return provider.Result{Action: provider.Drop, Reason: "payload", Err: redact.Error(err, t.Token)}
	}
	rctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	start := time.Now()
	res := c.send(ctx, rctx, body, p.opts.Now)
	res.Latency = time.Since(start)
	// FCM's error messages may quote the request (INVALID_ARGUMENT names the offending value).
	res.Err = redact.Error(res.Err, t.Token)
	return res
}

func (c *client) send(parent, ctx context.Context, body []byte, now func() time.Time) provider.Result {
	tok, err := (*c.ts.Load()).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500 {
			return provider.Result{Action: provider.Configuration, StatusCode: re.Response.StatusCode, Reason: ReasonOAuthRejected, Err: err}
		}
		return provider.Result{Action: provider.Retry, Reason: provider.TransportReason(parent, err), Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return provider.Result{Action: provider.Configuration, Reason: "bad_endpoint", Err: err}
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	tok.SetAuthHeader(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return provider.Result{Action: provider.Retry, Reason: provider.TransportReason(parent, err), Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return provider.Result{Action: provider.Retry, StatusCode: resp.StatusCode, Reason: provider.TransportReason(parent, err), Err: err}
	}
	res := provider.Result{StatusCode: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		var ok struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(b, &ok) != nil || ok.Name == "" {
			res.Action, res.Reason = provider.Retry, ReasonBadResponse
			res.Err = errors.New("fcm: 200 without a message name")
			return res
		}
		res.Action, res.MessageID = provider.Accepted, ok.Name
		return res
	}
	code, msg := errorCode(b)
	res.Reason = code
	if code == "" {
		res.Reason = fmt.Sprintf("http_%d", resp.StatusCode)
	}
	res.Action = Classify(resp.StatusCode, code)
	res.Err = fmt.Errorf("fcm: %d %s: %s", resp.StatusCode, res.Reason, msg)
	switch {
	case res.Action == provider.Permanent:
		res.InvalidAt = now()
	case res.Action == provider.Retry:
		res.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), now())
		res.DeviceRateLimited = code == CodeQuotaExceeded
	case resp.StatusCode == http.StatusUnauthorized && code != CodeThirdPartyAuthError:
		// Our access token was refused: fetch a new one for the probe after the pause.
		c.resetToken()
	}
	return res
}

// Close closes idle connections of every client.
func (p *Pool) Close() {
	for _, c := range p.clients {
		c.transport.CloseIdleConnections()
	}
}
