// Package httpapi is ingest's HTTP API: device registration for apps, the event API for servers
// that do not speak XEP-0357 over a component, and device receipts. Requests and answers are
// JSON; errors are RFC 9457 problem details (application/problem+json). See README.md.
package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/wakepush/wakepush/services/internal/config"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/ratelimit"
	"github.com/wakepush/wakepush/services/internal/redact"
)

// DefaultMaxBody is the default request body limit.
const DefaultMaxBody = 16 << 10

// Options configures the API.
type Options struct {
	// Tenants may call the event API; nil or empty disables it (every call is 401).
	Tenants *Tenants
	// MaxBody is the request body limit in bytes (DefaultMaxBody when 0).
	MaxBody int64
	// ClientRate limits registration, unregistration and receipt calls per client IP address
	// (per /64 for IPv6; a zero Rate: unlimited). Apps call these; XMPP servers and tenants do not.
	ClientRate ratelimit.Rate
	// TrustedProxies are the proxies whose X-Forwarded-For names the client (nil: none; the
	// client is the connection's peer).
	TrustedProxies *TrustedProxies
	// TenantRate limits event API calls per tenant (a zero Rate: unlimited).
	TenantRate ratelimit.Rate
	Log        *slog.Logger
}

// maxLimiterKeys bounds the memory of the per-client and per-tenant token buckets.
const maxLimiterKeys = 100_000

type api struct {
	in      *core.Ingester
	tenants *Tenants
	maxBody int64
	log     *slog.Logger
	proxies *TrustedProxies
	clients *ratelimit.Limiter
	tenantL *ratelimit.Limiter
	tracer  trace.Tracer
}

// New returns the API handler.
func New(in *core.Ingester, opts Options) http.Handler {
	a := &api{in: in, tenants: opts.Tenants, maxBody: opts.MaxBody, log: opts.Log,
		proxies: opts.TrustedProxies,
		clients: ratelimit.New(opts.ClientRate, ratelimit.Options{Name: "http_client", MaxKeys: maxLimiterKeys}),
		tenantL: ratelimit.New(opts.TenantRate, ratelimit.Options{Name: "http_tenant", MaxKeys: maxLimiterKeys}),
		tracer:  otel.Tracer("github.com/wakepush/wakepush/services/ingest/httpapi")}
	if a.maxBody <= 0 {
		a.maxBody = DefaultMaxBody
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	mux := http.NewServeMux()
	for _, r := range []struct {
		path string
		h    http.HandlerFunc
	}{
		{"/v1/registrations", a.perClient(a.register)},
		{"/v1/registrations/unregister", a.perClient(a.unregister)},
		{"/v1/events", a.event},
		{"/v1/receipts", a.perClient(a.receipt)},
	} {
		mux.Handle("POST "+r.path, a.traced(r.h))
		mux.HandleFunc(r.path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", http.MethodPost)
			writeProblem(w, kindMethod, "use POST")
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, kindNotFound, "")
	})
	return mux
}

// perClient answers 429 to a client (clientaddr.go) over its rate before h reads anything.
func (a *api) perClient(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := a.clients.Allow(a.proxies.clientKeyOf(r)); !ok {
			writeRateLimited(w, wait, "")
			return
		}
		h(w, r)
	}
}

// statusWriter remembers the status for the span.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// traced wraps h in a SERVER span, continuing the caller's W3C trace context.
func (a *api) traced(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		route := r.Pattern
		if _, p, ok := strings.Cut(route, " "); ok {
			route = p
		}
		ctx, span := a.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.HTTPRoute(route), semconv.URLPath(r.URL.Path)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r.WithContext(ctx))
		span.SetAttributes(semconv.HTTPResponseStatusCode(sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// decode reads a single JSON object into v, rejecting unknown fields, trailing data and bodies
// over the limit. It writes the problem and returns false on failure.
func (a *api) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			writeProblem(w, kindUnsupportedType, "send Content-Type: application/json")
			return false
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Exactly one JSON value.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("unexpected data after the JSON object")
			if terr != nil && !errors.Is(terr, io.ErrUnexpectedEOF) {
				err = terr
			}
		}
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeProblem(w, kindTooLarge, fmt.Sprintf("the body limit is %d bytes", a.maxBody))
	case errors.Is(err, io.EOF):
		writeProblem(w, kindBadRequest, "the body must be a JSON object")
	default:
		writeProblem(w, kindBadRequest, "invalid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	return false
}

// fail writes the problem for a core error.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ce *core.Error
	if !errors.As(err, &ce) {
		ce = &core.Error{Code: core.CodeUnavailable, Detail: "internal error, retry later", Err: err}
	}
	k := kindOf(ce.Code)
	if k.status >= 500 {
		trace.SpanFromContext(r.Context()).RecordError(redact.Error(err))
	}
	writeProblem(w, k, ce.Detail)
}

type registerRequest struct {
	App         string `json:"app"`
	Token       string `json:"token"`
	Environment string `json:"environment"`
	// Node and Secret (optional) are the caller's current registration: when they verify and
	// name the same app and token, that registration is renewed instead of a new one made.
	Node   string `json:"node"`
	Secret string `json:"secret"`
}

type registerResponse struct {
	DeviceID       string `json:"device_id"`
	RegistrationID string `json:"registration_id"`
	Node           string `json:"node"`
	Secret         string `json:"secret"`
	JID            string `json:"jid,omitempty"`
}

func (a *api) register(w http.ResponseWriter, r *http.Request) {
	var req registerRequest
	if !a.decode(w, r, &req) {
		a.in.Metrics().Registration(r.Context(), "http_api", "active", core.CodeMalformed)
		return
	}
	if req.App == "" || req.Token == "" {
		a.in.Metrics().Registration(r.Context(), "http_api", "active", core.CodeMalformed)
		writeProblem(w, kindBadRequest, "app and token are required")
		return
	}
	reg, err := a.in.Register(r.Context(), core.RegisterRequest{
		App: req.App, Token: req.Token, Environment: req.Environment, Node: req.Node, Secret: req.Secret,
		Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API,
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, registerResponse{DeviceID: reg.DeviceID, RegistrationID: reg.RegistrationID, Node: reg.Node, Secret: reg.Secret, JID: reg.JID})
}

type nodeRequest struct {
	Node   string `json:"node"`
	Secret string `json:"secret"`
}

func (a *api) unregister(w http.ResponseWriter, r *http.Request) {
	var req nodeRequest
	if !a.decode(w, r, &req) {
		a.in.Metrics().Registration(r.Context(), "http_api", "unregistered", core.CodeMalformed)
		return
	}
	id, err := a.in.Unregister(r.Context(), req.Node, req.Secret, "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"device_id": id, "state": "unregistered"})
}

type eventRequest struct {
	Node         string `json:"node"`
	Secret       string `json:"secret"`
	Urgent       bool   `json:"urgent"`
	Important    bool   `json:"important"`
	MessageCount uint32 `json:"message_count"`
}

func (a *api) event(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.tenants.Authenticate(r.Header.Get("Authorization"))
	if !ok {
		a.in.Metrics().Publish(r.Context(), "http", core.CodeNotAuthorized)
		writeProblem(w, kindUnauthorized, "send Authorization: Bearer <event API token>")
		return
	}
	if ok, wait := a.tenantL.Allow(tenant); !ok {
		a.in.Metrics().Publish(r.Context(), "http", core.CodeRateLimited)
		writeRateLimited(w, wait, "the tenant's event rate is exceeded")
		return
	}
	var req eventRequest
	if !a.decode(w, r, &req) {
		a.in.Metrics().Publish(r.Context(), "http", core.CodeMalformed)
		return
	}
	id, err := a.in.Publish(r.Context(), core.Event{
		Node: req.Node, Secret: req.Secret,
		Source: wakepushv1.EventSource_EVENT_SOURCE_HTTP, Sender: tenant,
		Urgent: req.Urgent, Important: req.Important, MessageCount: req.MessageCount,
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"event_id": id})
}

type receiptRequest struct {
	Node       string `json:"node"`
	Secret     string `json:"secret"`
	WakeID     string `json:"wake_id"`
	ReceivedAt string `json:"received_at"`
}

func (a *api) receipt(w http.ResponseWriter, r *http.Request) {
	var req receiptRequest
	if !a.decode(w, r, &req) {
		a.in.Metrics().Receipt(r.Context(), core.CodeMalformed)
		return
	}
	var at time.Time
	if req.ReceivedAt != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, req.ReceivedAt); err != nil {
			a.in.Metrics().Receipt(r.Context(), core.CodeMalformed)
			writeProblem(w, kindBadRequest, "received_at must be an RFC 3339 time, e.g. 2025-01-02T15:04:05Z")
			return
		}
	}
	id, err := a.in.Receipt(r.Context(), req.Node, req.Secret, req.WakeID, at)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"receipt_id": id})
}

// Tenants are the callers of the event API and their bearer tokens.
type Tenants struct {
	list []tenant
}

type tenant struct {
	name   string
	digest [sha256.Size]byte
}

// MinTokenLen is the minimum length of an event API token.
const MinTokenLen = 12

// ParseTenants parses "tenant:token[,tenant:token…]" (empty: no tenants). Tenant names are
// letters, digits, '.', '_' and '-'; tokens at least MinTokenLen characters.
func ParseTenants(v string) (*Tenants, error) {
	t := &Tenants{}
	seen := map[string]bool{}
	var errs []error
	for _, item := range config.SplitList(v) {
		name, tok, ok := strings.Cut(item, ":")
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("entry #%d is not tenant:token", len(t.list)+len(errs)+1))
			continue
		case !validTenant(name):
			errs = append(errs, fmt.Errorf("tenant %q: use 1 to 64 letters, digits, '.', '_' or '-'", name))
			continue
		case seen[name]:
			errs = append(errs, fmt.Errorf("tenant %q is listed twice", name))
			continue
		case len(tok) < MinTokenLen:
			errs = append(errs, fmt.Errorf("tenant %q: token must be at least %d characters", name, MinTokenLen))
			continue
		}
		seen[name] = true
		t.list = append(t.list, tenant{name: name, digest: sha256.Sum256([]byte(tok))})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

func validTenant(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Len is the number of tenants.
func (t *Tenants) Len() int {
	if t == nil {
		return 0
	}
	return len(t.list)
}

// Authenticate checks an Authorization header value ("Bearer <token>") against every tenant in
// constant time (digests of equal length, no early exit) and returns the tenant's name.
func (t *Tenants) Authenticate(header string) (string, bool) {
	if t == nil || len(t.list) == 0 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	found := -1
	for i := range t.list {
		if subtle.ConstantTimeCompare(d[:], t.list[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.list[found].name, true
}
