package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wakepush/wakepush/services/internal/config"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// The fpush/Monal convention ("token node"): there is no registration. The client enables push
// with node = its provider token and a publish-options field pushModule naming the app
// (a "-sandbox" suffix selects the APNs sandbox), without a secret. Since anyone who knows a
// token could then trigger pushes, ingest adds what fpush lacks: the sender domains allowed per
// push module, and token-bucket rate limits per sender domain and per device. An over-limit
// publish is answered wait/resource-constraint (never dropped silently).

// PushModule maps an fpush pushModule name to an app.
type PushModule struct {
	Name string // e.g. monalProdiOS (without -sandbox)
	App  string
	// Domains are the sender (XMPP server) domains allowed to publish; empty: any.
	Domains []string
}

// SandboxSuffix marks a push module name as the APNs sandbox environment.
const SandboxSuffix = "-sandbox"

// ParsePushModules parses "module=app[:domain|domain…][,…]".
func ParsePushModules(s string) (map[string]PushModule, error) {
	out := map[string]PushModule{}
	var errs []error
	for _, item := range config.SplitList(s) {
		name, rest, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.TrimSpace(rest) == "" {
			errs = append(errs, fmt.Errorf("entry %q: want module=app[:domain|domain…]", item))
			continue
		}
		if strings.HasSuffix(name, SandboxSuffix) {
			errs = append(errs, fmt.Errorf("module %q: name it without %q (the suffix selects the sandbox)", name, SandboxSuffix))
			continue
		}
		app, doms, _ := strings.Cut(rest, ":")
		m := PushModule{Name: name, App: strings.TrimSpace(app)}
		for _, d := range strings.Split(doms, "|") {
			if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
				m.Domains = append(m.Domains, d)
			}
		}
		if _, dup := out[name]; dup {
			errs = append(errs, fmt.Errorf("module %q is listed twice", name))
			continue
		}
		out[name] = m
	}
	return out, errors.Join(errs...)
}

// Rate is a token-bucket limit: PerSecond sustained, Burst at once. A zero Rate is unlimited.
type Rate struct {
	PerSecond float64
	Burst     int
}

// ParseRate parses "N/s[:burst]" (also /m, /h); "" or "0" means unlimited.
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Rate{}, nil
	}
	spec, burst, hasBurst := strings.Cut(s, ":")
	num, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/m or N/h, optionally :burst", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("rate %q: %q is not a positive number", s, num)
	}
	switch unit {
	case "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		return Rate{}, fmt.Errorf("rate %q: unit %q is not s, m or h", s, unit)
	}
	r := Rate{PerSecond: n, Burst: max(1, int(n))}
	if hasBurst {
		b, err := strconv.Atoi(burst)
		if err != nil || b < 1 {
			return Rate{}, fmt.Errorf("rate %q: burst %q is not a positive integer", s, burst)
		}
		r.Burst = b
	}
	return r, nil
}

// TokenNodeConfig configures the fpush convention. A nil *TokenNodeConfig disables it.
type TokenNodeConfig struct {
	Modules     map[string]PushModule
	SenderRate  Rate // per sender domain
	DeviceRate  Rate // per device
	MaxSeen     int  // devices remembered as registered (default 1<<20)
	MaxLimiters int  // rate limiter entries kept per kind (default 1<<18)
}

// tokenNodes is the state of the fpush convention.
type tokenNodes struct {
	cfg     TokenNodeConfig
	senders *limiters
	devices *limiters

	mu   sync.Mutex
	seen map[string]struct{} // devices whose TOKEN_NODE registration this instance wrote
}

func newTokenNodes(cfg *TokenNodeConfig) *tokenNodes {
	if cfg == nil {
		return nil
	}
	c := *cfg
	if c.MaxSeen <= 0 {
		c.MaxSeen = 1 << 20
	}
	if c.MaxLimiters <= 0 {
		c.MaxLimiters = 1 << 18
	}
	return &tokenNodes{cfg: c, senders: newLimiters(c.SenderRate, c.MaxLimiters), devices: newLimiters(c.DeviceRate, c.MaxLimiters), seen: map[string]struct{}{}}
}

// TokenEvent is a publish of the fpush convention.
type TokenEvent struct {
	// Token is the node (the provider token); Module the publish-options pushModule.
	Token, Module            string
	Sender                   string
	Urgent, Important        bool
	MessageCount             uint32
	PendingSubscriptionCount uint32
}

// IsTokenNode reports whether a publish with this node and pushModule belongs to the fpush
// convention (and the convention is enabled).
func (in *Ingester) IsTokenNode(node, module string) bool {
	if in.tokens == nil || module == "" {
		return false
	}
	_, err := identity.ParseNode(node)
	return errors.Is(err, identity.ErrMalformedNode)
}

// PublishToken records a publish of the fpush convention: on first sight of the device (by this
// instance) an ACTIVE Registration with source TOKEN_NODE, then the PushEvent, each acknowledged
// by Kafka before it returns.
func (in *Ingester) PublishToken(ctx context.Context, ev TokenEvent) (id string, err error) {
	const source = "xmpp_token_node"
	in.metrics.inflight(ctx, source, 1)
	defer in.metrics.inflight(ctx, source, -1)
	span := trace.SpanFromContext(ctx)
	defer func() {
		in.metrics.Publish(ctx, source, CodeOf(err))
		span.SetAttributes(attribute.String("wakepush.outcome", string(CodeOf(err))))
	}()
	tn := in.tokens
	if tn == nil {
		return "", fail(CodeUnknownNode, "node is not a node of this App Server", nil)
	}
	name, sandbox := strings.CutSuffix(ev.Module, SandboxSuffix)
	mod, ok := tn.cfg.Modules[name]
	if !ok {
		return "", fail(CodeUnknownApp, fmt.Sprintf("pushModule %q is not served here", ev.Module), nil)
	}
	app, ok := in.cfg.Apps.Get(mod.App)
	if !ok {
		return "", fail(CodeUnknownApp, fmt.Sprintf("pushModule %q is not served here", ev.Module), nil)
	}
	sender := strings.ToLower(ev.Sender)
	if len(mod.Domains) > 0 && !slices.Contains(mod.Domains, sender) {
		return "", fail(CodeForbidden, fmt.Sprintf("server %q may not publish to pushModule %q", sender, ev.Module), nil)
	}
	envName := "production"
	if sandbox {
		envName = "sandbox"
	}
	env, err := ParseEnvironment(app.Platform, envName)
	if err != nil {
		return "", fail(CodeUnknownApp, fmt.Sprintf("pushModule %q: %v", ev.Module, err), nil)
	}
	token, err := identity.NormalizeToken(app.Platform, ev.Token)
	if err != nil {
		// Not a token of this platform: no such node.
		return "", fail(CodeUnknownNode, "node is not a provider token of pushModule "+strconvQuote(ev.Module), nil)
	}
	reg := in.cfg.Keys.Register(app.ID, app.Platform, token)
	span.SetAttributes(attribute.String("wakepush.device_id", reg.DeviceID), attribute.String("wakepush.app", app.ID))
	if in.cfg.Devices.Unregistered(reg.DeviceID) {
		return "", fail(CodeGone, "the device is unregistered", nil)
	}
	now := in.cfg.Now()
	if !tn.senders.allow(sender, now) {
		return "", fail(CodeRateLimited, "rate limit for this server reached, retry later", nil)
	}
	if !tn.devices.allow(reg.DeviceID, now) {
		return "", fail(CodeRateLimited, "rate limit for this device reached, retry later", nil)
	}
	if !tn.wasSeen(reg.DeviceID) {
		ts := records.Timestamp(now)
		rec := &wakepushv1.Registration{
			Id: records.NewID(), CreatedAt: ts, DeviceId: reg.DeviceID, App: app.ID, Platform: app.ProtoPlatform(),
			Environment: env, Token: token, State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
			Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_TOKEN_NODE, RegisteredAt: ts,
		}
		err := in.produce(ctx, kafkax.Record{Topic: topics.Registrations, Key: reg.DeviceID, Msg: rec})
		in.metrics.Registration(ctx, "token_node", "active", CodeOf(err))
		if err != nil {
			return "", err
		}
		in.cfg.Devices.Apply(rec)
		tn.markSeen(reg.DeviceID)
	}
	pe := &wakepushv1.PushEvent{
		Id: records.NewID(), AcceptedAt: records.Timestamp(now), DeviceId: reg.DeviceID, App: app.ID,
		Platform: app.ProtoPlatform(), Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: sender,
		// The wakepush node of the device, never the token (events must not carry tokens).
		Node:   reg.Node,
		Urgent: ev.Urgent, Important: ev.Important, MessageCount: ev.MessageCount,
		PendingSubscriptionCount: ev.PendingSubscriptionCount,
	}
	if err := in.produce(ctx, kafkax.Record{Topic: topics.Events, Key: pe.DeviceId, Msg: pe}); err != nil {
		return "", err
	}
	span.SetAttributes(attribute.String("wakepush.event_id", pe.Id))
	return pe.Id, nil
}

func strconvQuote(s string) string { return strconv.Quote(s) }

func (tn *tokenNodes) wasSeen(id string) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	_, ok := tn.seen[id]
	return ok
}

func (tn *tokenNodes) markSeen(id string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if len(tn.seen) >= tn.cfg.MaxSeen {
		// Forget everything: the cost is one more (idempotent) registration record per device.
		clear(tn.seen)
	}
	tn.seen[id] = struct{}{}
}

// Limiter is a set of token buckets by key (rate limits per sender, device, account), bounded
// in memory. Safe for concurrent use.
type Limiter struct{ l *limiters }

// NewLimiter returns a limiter of rate r per key keeping at most maxKeys buckets (a zero Rate
// allows everything).
func NewLimiter(r Rate, maxKeys int) *Limiter { return &Limiter{newLimiters(r, max(1, maxKeys))} }

// Allow takes a token from key's bucket at now and reports whether there was one.
func (l *Limiter) Allow(key string, now time.Time) bool { return l.l.allow(key, now) }

// limiters is a set of token buckets by key, bounded in size: when full, buckets that have
// refilled completely (indistinguishable from new ones) are dropped.
type limiters struct {
	rate Rate
	max  int
	mu   sync.Mutex
	m    map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiters(r Rate, maxEntries int) *limiters {
	return &limiters{rate: r, max: maxEntries, m: map[string]*bucket{}}
}

// allow takes a token from key's bucket.
func (l *limiters) allow(key string, now time.Time) bool {
	if l.rate.PerSecond <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[key]
	if !ok {
		if len(l.m) >= l.max {
			l.sweep(now)
		}
		b = &bucket{tokens: float64(l.rate.Burst), last: now}
		l.m[key] = b
	}
	b.refill(l.rate, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(r Rate, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(r.Burst), b.tokens+d.Seconds()*r.PerSecond)
		b.last = now
	}
}

func (l *limiters) sweep(now time.Time) {
	for k, b := range l.m {
		b.refill(l.rate, now)
		if b.tokens >= float64(l.rate.Burst) {
			delete(l.m, k)
		}
	}
	if len(l.m) >= l.max {
		// Every bucket is in use (an attack on the key space): start over rather than grow.
		clear(l.m)
	}
}
