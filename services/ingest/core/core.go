// Package core is what every ingest front end (XEP-0114 component, HTTP API, ad-hoc
// commands, the fpush token-node convention) shares: verifying a node and its secret, refusing
// unregistered devices, and writing PushEvent, Registration and Receipt records to Kafka with
// acks=all before the caller answers.
//
// Errors are *Error values with a Code that each front end maps to its own answer (an IQ error,
// an HTTP problem). Their Detail is safe to show to the caller: it never contains a token, a
// secret or message content.
package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// Code classifies an outcome.
type Code string

// Codes. The strings are metric attribute values.
const (
	CodeOK            Code = "ok"
	CodeMalformed     Code = "malformed"      // the request itself is invalid
	CodeUnknownNode   Code = "unknown_node"   // the node is not of a scheme ingest knows
	CodeNotAuthorized Code = "not_authorized" // wrong secret, unknown key id, wrong credentials
	CodeUnknownApp    Code = "unknown_app"    // the app is not (or no longer) configured
	CodeGone          Code = "gone"           // the device is unregistered
	CodeUnavailable   Code = "unavailable"    // Kafka did not acknowledge in time
	CodeOverloaded    Code = "overloaded"     // too many requests in flight
	CodeShuttingDown  Code = "shutting_down"  // the instance is draining
	CodeForbidden     Code = "forbidden"      // the sender may not publish to this node
	CodeRateLimited   Code = "rate_limited"   // a per-sender or per-device rate limit was reached
)

// Error is a classified failure.
type Error struct {
	Code   Code
	Detail string // safe to show to the caller
	Err    error  // cause, for logs
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the code of err (CodeOK for nil, CodeUnavailable for an unclassified error).
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnavailable
}

// DetailOf is the client-facing detail of a core error ("" for other errors).
func DetailOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return ""
}

func fail(code Code, detail string, cause error) *Error {
	return &Error{Code: code, Detail: detail, Err: cause}
}

// Producer writes records and returns once Kafka acknowledged them (kafkax.Producer).
type Producer interface {
	Produce(ctx context.Context, recs ...kafkax.Record) error
}

// Devices knows which registrations are unregistered (package devices).
type Devices interface {
	// Unregistered reports whether the registration (registrationID "" for a device's v1
	// registration) is unregistered.
	Unregistered(deviceID, registrationID string) bool
	// Apply records a registration state this instance just wrote, so that its own answers
	// reflect it before the registrations topic is read back.
	Apply(reg *wakepushv1.Registration)
}

// Config configures an Ingester.
type Config struct {
	Apps     *apps.Set
	Keys     *identity.Keys
	Producer Producer
	Devices  Devices
	// ComponentJID is the App Server JID clients put in their XEP-0357 enable (may be empty when
	// only the HTTP event API is used).
	ComponentJID string
	// ProduceTimeout bounds the wait for Kafka's acknowledgement of one request.
	ProduceTimeout time.Duration
	Log            *slog.Logger
	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
	// TokenNodes enables the fpush/Monal convention (nil: disabled).
	TokenNodes *TokenNodeConfig
}

// Ingester verifies and records events, registrations and receipts.
type Ingester struct {
	cfg     Config
	metrics *Metrics
	tokens  *tokenNodes

	lastWarn   atomic.Int64 // unix nanos of the last produce-failure log
	suppressed atomic.Int64
}

// New returns an Ingester.
func New(cfg Config) (*Ingester, error) {
	if cfg.Apps == nil || cfg.Keys == nil || cfg.Producer == nil || cfg.Devices == nil {
		return nil, errors.New("core: Apps, Keys, Producer and Devices are required")
	}
	if cfg.ProduceTimeout <= 0 {
		cfg.ProduceTimeout = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := NewMetrics()
	if err != nil {
		return nil, err
	}
	return &Ingester{cfg: cfg, metrics: m, tokens: newTokenNodes(cfg.TokenNodes)}, nil
}

// Metrics returns the ingest metrics, for front ends to record what never reaches the core
// (malformed or over-limit requests).
func (in *Ingester) Metrics() *Metrics { return in.metrics }

// ComponentJID is the configured App Server JID ("" when none).
func (in *Ingester) ComponentJID() string { return in.cfg.ComponentJID }

// device is a verified node.
type device struct {
	node identity.Node
	app  *apps.App
}

// verify checks node and secret and that the node's app is configured. It does not check
// whether the device is unregistered.
func (in *Ingester) verify(node, secret string) (device, error) {
	if node == "" {
		return device{}, fail(CodeMalformed, "node is required", nil)
	}
	n, err := in.cfg.Keys.Verify(node, secret)
	switch {
	case errors.Is(err, identity.ErrMalformedNode):
		return device{}, fail(CodeUnknownNode, "node is not a node of this App Server", err)
	case errors.Is(err, identity.ErrUnknownKey):
		return device{}, fail(CodeNotAuthorized, "node key is not known (rotated out?)", err)
	case errors.Is(err, identity.ErrBadSecret):
		return device{}, fail(CodeNotAuthorized, "wrong secret for node", err)
	case err != nil:
		return device{}, fail(CodeNotAuthorized, "node not verified", err)
	}
	app, ok := in.cfg.Apps.Get(n.App)
	if !ok {
		return device{}, fail(CodeUnknownApp, fmt.Sprintf("app %q is not served here", n.App), nil)
	}
	return device{node: n, app: app}, nil
}

func (in *Ingester) produce(ctx context.Context, rec kafkax.Record) error {
	pctx, cancel := context.WithTimeout(ctx, in.cfg.ProduceTimeout)
	defer cancel()
	rec.Ctx = ctx
	if err := in.cfg.Producer.Produce(pctx, rec); err != nil {
		in.warnProduce(ctx, rec.Topic, err)
		return fail(CodeUnavailable, "the event store is unavailable, retry later", err)
	}
	return nil
}

// warnProduce logs a produce failure at most once per second (an outage fails every request),
// with the number of failures not logged since.
func (in *Ingester) warnProduce(ctx context.Context, topic string, err error) {
	now := in.cfg.Now().UnixNano()
	last := in.lastWarn.Load()
	if now-last < int64(time.Second) || !in.lastWarn.CompareAndSwap(last, now) {
		in.suppressed.Add(1)
		return
	}
	in.cfg.Log.WarnContext(ctx, "kafka produce failed", "topic", topic, "err", err, "failures_not_logged", in.suppressed.Swap(0))
}

// Event is one trigger to record.
type Event struct {
	Node, Secret string
	Source       wakepushv1.EventSource
	// Sender is who sent it: the XMPP server's domain or the HTTP tenant.
	Sender                   string
	Urgent, Important        bool
	MessageCount             uint32
	PendingSubscriptionCount uint32
}

// Publish verifies ev and writes a PushEvent keyed by its device id, returning the event id once
// Kafka acknowledged it. ctx's span (the front end's SERVER span) becomes the parent of the
// producer span.
func (in *Ingester) Publish(ctx context.Context, ev Event) (id string, err error) {
	source := SourceName(ev.Source)
	in.metrics.inflight(ctx, source, 1)
	defer in.metrics.inflight(ctx, source, -1)
	span := trace.SpanFromContext(ctx)
	// Span attributes only on a recorded span (an unsampled one ignores them, but building
	// them costs).
	recording := span.IsRecording()
	defer func() {
		in.metrics.Publish(ctx, source, CodeOf(err))
		if recording {
			span.SetAttributes(attribute.String("wakepush.outcome", string(CodeOf(err))))
		}
	}()

	d, err := in.verify(ev.Node, ev.Secret)
	if err != nil {
		return "", err
	}
	if recording {
		span.SetAttributes(attribute.String("wakepush.device_id", d.node.DeviceID), attribute.String("wakepush.app", d.app.ID))
	}
	if in.cfg.Devices.Unregistered(d.node.DeviceID, d.node.RegistrationID) {
		return "", fail(CodeGone, "the device is unregistered", nil)
	}
	now := in.cfg.Now()
	pe := &wakepushv1.PushEvent{
		Id:                       records.NewID(),
		AcceptedAt:               records.Timestamp(now),
		DeviceId:                 d.node.DeviceID,
		App:                      d.app.ID,
		Platform:                 d.app.ProtoPlatform(),
		Source:                   ev.Source,
		Sender:                   ev.Sender,
		Node:                     ev.Node,
		Urgent:                   ev.Urgent,
		Important:                ev.Important,
		MessageCount:             ev.MessageCount,
		PendingSubscriptionCount: ev.PendingSubscriptionCount,
	}
	if err := in.produce(ctx, kafkax.Record{Topic: topics.Events, Key: pe.DeviceId, Msg: pe}); err != nil {
		return "", err
	}
	if recording {
		span.SetAttributes(attribute.String("wakepush.event_id", pe.Id))
	}
	return pe.Id, nil
}

// Registered is the answer to a registration.
type Registered struct {
	DeviceID, RegistrationID, Node, Secret string
	// JID is the App Server JID to put in the XEP-0357 enable ("" when no component is configured).
	JID string
}

// RegisterRequest is a device registration.
type RegisterRequest struct {
	App         string
	Token       string
	Environment string // "production" (default) or "sandbox" (APNs only)
	Source      wakepushv1.RegistrationSource
	// Account, when set, is the bare JID registering (the ad-hoc commands): the account's
	// registration of the device is written (the same one each time it registers the token).
	Account string
	// Node and Secret, when set, are a registration the client already holds (the HTTP API):
	// when they verify and name the same app and device, that registration is written and
	// returned again (renewed) instead of a new one.
	Node, Secret string
}

// ParseEnvironment maps the API's environment names to the record enum.
func ParseEnvironment(platform, env string) (wakepushv1.Environment, error) {
	switch strings.ToLower(env) {
	case "", "production":
		return wakepushv1.Environment_ENVIRONMENT_PRODUCTION, nil
	case "sandbox":
		if platform != "apns" {
			return 0, errors.New(`environment "sandbox" exists only for APNs apps`)
		}
		return wakepushv1.Environment_ENVIRONMENT_SANDBOX, nil
	}
	return 0, fmt.Errorf(`environment %q: want "production" or "sandbox"`, env)
}

// Register writes an ACTIVE registration of the device of (app, token) and returns its node and
// secret. Each call makes a new registration with its own random registration id, node and
// secret, except for an account (RegisterRequest.Account: that account's registration of the
// device) and a renewal (RegisterRequest.Node and Secret: the caller's own registration). So
// presenting a token never yields a node or secret that someone else was given, and
// re-activates only a registration of the caller's own.
func (in *Ingester) Register(ctx context.Context, req RegisterRequest) (reg Registered, err error) {
	source := RegistrationSourceName(req.Source)
	defer func() { in.metrics.Registration(ctx, source, "active", CodeOf(err)) }()
	app, ok := in.cfg.Apps.Get(req.App)
	if !ok {
		return Registered{}, fail(CodeUnknownApp, fmt.Sprintf("app %q is not served here", req.App), nil)
	}
	env, err := ParseEnvironment(app.Platform, req.Environment)
	if err != nil {
		return Registered{}, fail(CodeMalformed, err.Error(), nil)
	}
	token, err := identity.NormalizeToken(app.Platform, req.Token)
	if err != nil {
		return Registered{}, fail(CodeMalformed, strings.TrimPrefix(err.Error(), "identity: "), nil)
	}
	deviceID := in.cfg.Keys.DeviceID(app.ID, app.Platform, token)
	regID, err := in.registrationID(req, app.ID, deviceID)
	if err != nil {
		return Registered{}, err
	}
	r := in.cfg.Keys.RegistrationOf(deviceID, regID, app.ID)
	now := records.Timestamp(in.cfg.Now())
	rec := &wakepushv1.Registration{
		Id:             records.NewID(),
		CreatedAt:      now,
		DeviceId:       r.DeviceID,
		RegistrationId: r.RegistrationID,
		App:            app.ID,
		Platform:       app.ProtoPlatform(),
		Environment:    env,
		Token:          token,
		State:          wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
		Source:         req.Source,
		// Ingest keeps no per-registration state, so it cannot know an earlier registration
		// time: a renewal restarts the clock.
		RegisteredAt: now,
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("wakepush.device_id", r.DeviceID), attribute.String("wakepush.app", app.ID))
	if err := in.produce(ctx, kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(r.DeviceID, r.RegistrationID), Msg: rec}); err != nil {
		return Registered{}, err
	}
	in.cfg.Devices.Apply(rec)
	return Registered{DeviceID: r.DeviceID, RegistrationID: r.RegistrationID, Node: r.Node, Secret: r.Secret, JID: in.cfg.ComponentJID}, nil
}

// registrationID picks the registration a Register request writes: the account's, the caller's
// own (a verified node of the same app and device), or a new random one.
func (in *Ingester) registrationID(req RegisterRequest, appID, deviceID string) (string, error) {
	switch {
	case req.Account != "":
		return in.cfg.Keys.AccountRegistrationID(deviceID, req.Account), nil
	case req.Node != "" || req.Secret != "":
		d, err := in.verify(req.Node, req.Secret)
		if err != nil {
			return "", err
		}
		if d.node.App == appID && d.node.DeviceID == deviceID && d.node.RegistrationID != "" {
			return d.node.RegistrationID, nil // the caller's own registration, renewed
		}
		// Another token (the app's token changed) or a v1 node: a new registration.
	}
	return identity.NewRegistrationID(), nil
}

// Unregister writes an UNREGISTERED state for the registration of node (whose secret must match)
// with the given reason: only that registration ends; the device keeps its other registrations
// (and their wakes). It is idempotent. The record carries no token: ingest does not know it, and
// the state supersedes the registration's active record in the compacted topic.
func (in *Ingester) Unregister(ctx context.Context, node, secret, reason string, source wakepushv1.RegistrationSource) (deviceID string, err error) {
	defer func() { in.metrics.Registration(ctx, RegistrationSourceName(source), "unregistered", CodeOf(err)) }()
	d, err := in.verify(node, secret)
	if err != nil {
		return "", err
	}
	if d.node.RegistrationID != "" && (d.node.RegistrationID == in.cfg.Keys.TokenNodeRegistrationID(d.node.DeviceID, "production") ||
		d.node.RegistrationID == in.cfg.Keys.TokenNodeRegistrationID(d.node.DeviceID, "sandbox")) {
		// Never handed out, so this cannot happen; but only the provider may end a token node.
		return "", fail(CodeForbidden, "a token-node registration is unregistered only by the push provider", nil)
	}
	if err := in.writeUnregistration(ctx, d.node.DeviceID, d.node.RegistrationID, d.app, reason, source); err != nil {
		return "", err
	}
	return d.node.DeviceID, nil
}

// writeUnregistration writes (and applies) the UNREGISTERED record of one registration.
func (in *Ingester) writeUnregistration(ctx context.Context, deviceID, regID string, app *apps.App, reason string, source wakepushv1.RegistrationSource) error {
	rec := &wakepushv1.Registration{
		Id:             records.NewID(),
		CreatedAt:      records.Timestamp(in.cfg.Now()),
		DeviceId:       deviceID,
		RegistrationId: regID,
		App:            app.ID,
		Platform:       app.ProtoPlatform(),
		State:          wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED,
		Source:         source,
		Reason:         reason,
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("wakepush.device_id", deviceID), attribute.String("wakepush.app", app.ID))
	if err := in.produce(ctx, kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(deviceID, regID), Msg: rec}); err != nil {
		return err
	}
	in.cfg.Devices.Apply(rec)
	return nil
}

// MaxWakeIDLen bounds a receipt's wake id.
const MaxWakeIDLen = 128

// Receipt records a device's report that wake wakeID arrived (receivedAt may be zero). Receipts
// of unregistered devices are still recorded: they are telemetry about a wake that was sent.
func (in *Ingester) Receipt(ctx context.Context, node, secret, wakeID string, receivedAt time.Time) (id string, err error) {
	defer func() { in.metrics.Receipt(ctx, CodeOf(err)) }()
	if wakeID == "" || len(wakeID) > MaxWakeIDLen || strings.ContainsFunc(wakeID, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return "", fail(CodeMalformed, fmt.Sprintf("wake_id is required: 1 to %d printable characters", MaxWakeIDLen), nil)
	}
	d, err := in.verify(node, secret)
	if err != nil {
		return "", err
	}
	rec := &wakepushv1.Receipt{
		Id:        records.NewID(),
		CreatedAt: records.Timestamp(in.cfg.Now()),
		WakeId:    wakeID,
		DeviceId:  d.node.DeviceID,
		App:       d.app.ID,
	}
	if !receivedAt.IsZero() {
		rec.ReceivedAt = timestamppb.New(receivedAt)
	}
	if err := in.produce(ctx, kafkax.Record{Topic: topics.Receipts, Key: d.node.DeviceID, Msg: rec}); err != nil {
		return "", err
	}
	return rec.Id, nil
}

// SourceName is the metric/log name of an event source.
func SourceName(s wakepushv1.EventSource) string {
	switch s {
	case wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT:
		return "xmpp_component"
	case wakepushv1.EventSource_EVENT_SOURCE_HTTP:
		return "http"
	}
	return "unspecified"
}

// RegistrationSourceName is the metric/log name of a registration source.
func RegistrationSourceName(s wakepushv1.RegistrationSource) string {
	switch s {
	case wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API:
		return "http_api"
	case wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC:
		return "adhoc"
	case wakepushv1.RegistrationSource_REGISTRATION_SOURCE_TOKEN_NODE:
		return "token_node"
	case wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER:
		return "sender"
	}
	return "unspecified"
}

// UnregisterAccount is Unregister for conventions that identify a registration by the account
// (bare JID) that made it and the device's provider token (the ad-hoc commands) instead of node
// and secret. It ends that account's registration of the device only: whoever else registered
// the token (another account, an app over HTTP, a token node) keeps its registration.
func (in *Ingester) UnregisterAccount(ctx context.Context, appID, token, account, reason string, source wakepushv1.RegistrationSource) (deviceID string, err error) {
	defer func() { in.metrics.Registration(ctx, RegistrationSourceName(source), "unregistered", CodeOf(err)) }()
	if account == "" {
		return "", fail(CodeMalformed, "the account is required", nil)
	}
	app, ok := in.cfg.Apps.Get(appID)
	if !ok {
		return "", fail(CodeUnknownApp, fmt.Sprintf("app %q is not served here", appID), nil)
	}
	token, err = identity.NormalizeToken(app.Platform, token)
	if err != nil {
		return "", fail(CodeMalformed, strings.TrimPrefix(err.Error(), "identity: "), nil)
	}
	id := in.cfg.Keys.DeviceID(app.ID, app.Platform, token)
	if err := in.writeUnregistration(ctx, id, in.cfg.Keys.AccountRegistrationID(id, account), app, reason, source); err != nil {
		return "", err
	}
	return id, nil
}
