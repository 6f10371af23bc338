package core

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	"github.com/wakepush/wakepush/services/ingest/ratelimit"
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
type Rate = ratelimit.Rate

// ParseRate parses "N/s[:burst]" (also /m, /h); "" or "0" means unlimited.
func ParseRate(s string) (Rate, error) { return ratelimit.ParseRate(s) }

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
	senders *ratelimit.Limiter
	devices *ratelimit.Limiter

	mu   sync.Mutex
	seen map[string]time.Time // token-node registrations (keys) this instance wrote, and when
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
	return &tokenNodes{cfg: c, senders: ratelimit.New(c.SenderRate, ratelimit.Options{Name: "token_sender", MaxKeys: c.MaxLimiters}),
		devices: ratelimit.New(c.DeviceRate, ratelimit.Options{Name: "token_device", MaxKeys: c.MaxLimiters}), seen: map[string]time.Time{}}
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
	// The device's token-node registration in this environment: its own registration, which no
	// client can unregister (its node is never handed out); only the provider ends it.
	deviceID := in.cfg.Keys.DeviceID(app.ID, app.Platform, token)
	reg := in.cfg.Keys.RegistrationOf(deviceID, in.cfg.Keys.TokenNodeRegistrationID(deviceID, envName), app.ID)
	regKey := records.RegistrationKey(reg.DeviceID, reg.RegistrationID)
	span.SetAttributes(attribute.String("wakepush.device_id", reg.DeviceID), attribute.String("wakepush.app", app.ID))
	if in.cfg.Devices.Unregistered(reg.DeviceID, reg.RegistrationID) {
		tn.forget(regKey) // once the unregistration expires, the next publish registers again
		return "", fail(CodeGone, "the device is unregistered", nil)
	}
	now := in.cfg.Now()
	if ok, wait := tn.senders.AllowAt(sender, now); !ok {
		return "", fail(CodeRateLimited, fmt.Sprintf("rate limit for this server reached, retry in %.0f s", math.Ceil(wait.Seconds())), nil)
	}
	if ok, wait := tn.devices.AllowAt(reg.DeviceID, now); !ok {
		return "", fail(CodeRateLimited, fmt.Sprintf("rate limit for this device reached, retry in %.0f s", math.Ceil(wait.Seconds())), nil)
	}
	if !tn.wasSeen(regKey, now) {
		ts := records.Timestamp(now)
		rec := &wakepushv1.Registration{
			Id: records.NewID(), CreatedAt: ts, DeviceId: reg.DeviceID, RegistrationId: reg.RegistrationID, App: app.ID,
			Platform: app.ProtoPlatform(), Environment: env, Token: token, State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
			Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_TOKEN_NODE, RegisteredAt: ts,
		}
		err := in.produce(ctx, kafkax.Record{Topic: topics.Registrations, Key: regKey, Msg: rec})
		in.metrics.Registration(ctx, "token_node", "active", CodeOf(err))
		if err != nil {
			return "", err
		}
		in.cfg.Devices.Apply(rec)
		tn.markSeen(regKey, now)
	}
	pe := &wakepushv1.PushEvent{
		Id: records.NewID(), AcceptedAt: records.Timestamp(now), DeviceId: reg.DeviceID, App: app.ID,
		Platform: app.ProtoPlatform(), Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: sender,
		// The wakepush node of the token-node registration, never the token (events must not
		// carry tokens).
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

// seenFor is how long an instance trusts that the token-node registration it wrote still exists:
// afterwards it writes it again (idempotent), so a registration removed meanwhile (its
// unregistration expired, and another instance answered the publishes while it was dead) comes
// back within a day.
const seenFor = 24 * time.Hour

// wasSeen reports whether this instance wrote the registration (key) within seenFor.
func (tn *tokenNodes) wasSeen(key string, now time.Time) bool {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	at, ok := tn.seen[key]
	return ok && now.Sub(at) < seenFor
}

func (tn *tokenNodes) markSeen(key string, now time.Time) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if len(tn.seen) >= tn.cfg.MaxSeen {
		// Forget everything: the cost is one more (idempotent) registration record per device.
		clear(tn.seen)
	}
	tn.seen[key] = now
}

func (tn *tokenNodes) forget(key string) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	delete(tn.seen, key)
}
