package core_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/apps"
)

func newCore(t *testing.T, p *testenv.Producer, a *apps.Set) (*core.Ingester, *devices.Set) {
	t.Helper()
	if a == nil {
		a = testenv.Apps(t)
	}
	devs := devices.New()
	in, err := core.New(core.Config{Apps: a, Keys: testenv.Keys(t), Producer: p, Devices: devs,
		ComponentJID: "push.example.org", ProduceTimeout: time.Second,
		Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	return in, devs
}

func TestRegisterPublishUnregister(t *testing.T) {
	p := &testenv.Producer{}
	in, devs := newCore(t, p, nil)
	ctx := context.Background()

	reg, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken, Environment: "sandbox",
		Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API})
	if err != nil {
		t.Fatal(err)
	}
	if reg.JID != "push.example.org" || reg.DeviceID == "" || reg.Secret == "" {
		t.Fatalf("registration %+v", reg)
	}
	again, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: "  " + strings.ToUpper(testenv.APNsToken),
		Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API})
	if err != nil {
		t.Fatal(err)
	}
	// The same device (the token in another case), but a registration of its own.
	if again.DeviceID != reg.DeviceID || again.RegistrationID == reg.RegistrationID || again.Node == reg.Node || again.Secret == reg.Secret {
		t.Fatalf("the same token (other case) registered as %+v, first %+v", again, reg)
	}
	recs := p.Records()
	if len(recs) != 2 || recs[0].Topic != topics.Registrations || recs[0].Key != reg.DeviceID+"/"+reg.RegistrationID ||
		recs[1].Key != again.DeviceID+"/"+again.RegistrationID {
		t.Fatalf("records %+v", recs)
	}
	r := recs[0].Msg.(*wakepushv1.Registration)
	if r.State != wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE || r.Token != testenv.APNsToken || r.RegistrationId != reg.RegistrationID ||
		r.Environment != wakepushv1.Environment_ENVIRONMENT_SANDBOX || r.Platform != wakepushv1.Platform_PLATFORM_APNS ||
		r.Id == "" || r.CreatedAt == nil || r.RegisteredAt == nil {
		t.Fatalf("registration record %v", r)
	}

	// Publish with a span in ctx: the record's context carries it (the producer span's parent).
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	sctx, span := tp.Tracer("test").Start(ctx, "publish", trace.WithSpanKind(trace.SpanKindServer))
	id, err := in.Publish(sctx, core.Event{Node: reg.Node, Secret: reg.Secret, Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT,
		Sender: "example.com", Important: true, MessageCount: 1})
	span.End()
	if err != nil {
		t.Fatal(err)
	}
	recs = p.Records()
	ev := recs[2].Msg.(*wakepushv1.PushEvent)
	if recs[2].Topic != topics.Events || recs[2].Key != reg.DeviceID || ev.Id != id || ev.DeviceId != reg.DeviceID ||
		ev.App != testenv.IOSApp || ev.Sender != "example.com" || !ev.Important || ev.MessageCount != 1 || ev.Node != reg.Node ||
		ev.Source != wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT || ev.AcceptedAt.AsTime().Year() != 2025 {
		t.Fatalf("event %v", ev)
	}
	if got := trace.SpanContextFromContext(recs[2].Ctx); got.SpanID() != span.SpanContext().SpanID() {
		t.Fatal("the record's context does not carry the publish span")
	}

	// Unregister: publishes are refused as gone at once (before the topic is read back).
	if _, err := in.Unregister(ctx, reg.Node, reg.Secret, "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API); err != nil {
		t.Fatal(err)
	}
	if !devs.Unregistered(reg.DeviceID, reg.RegistrationID) || devs.Unregistered(again.DeviceID, again.RegistrationID) {
		t.Fatal("the registration is not marked unregistered, or the other one is")
	}
	u := p.Records()[3]
	if ur := u.Msg.(*wakepushv1.Registration); u.Key != reg.DeviceID+"/"+reg.RegistrationID || ur.State != wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED ||
		ur.Reason != "client" || ur.Token != "" || ur.RegistrationId != reg.RegistrationID {
		t.Fatalf("unregistration %v", u)
	}
	if _, err := in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret}); core.CodeOf(err) != core.CodeGone {
		t.Fatalf("publish after unregister: %v", err)
	}
	if _, err := in.Publish(ctx, core.Event{Node: again.Node, Secret: again.Secret}); err != nil {
		t.Fatalf("publish to the device's other registration: %v", err)
	}
	// Registering the token again makes a new registration; the unregistered one stays so.
	if fresh, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken}); err != nil || fresh.Node == reg.Node {
		t.Fatalf("re-registration: %+v, %v", fresh, err)
	}
	if _, err := in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret}); core.CodeOf(err) != core.CodeGone {
		t.Fatalf("publish to the unregistered registration after another registration: %v", err)
	}
	// Renewing it with its own node and secret re-activates it (same node and secret).
	renewed, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken, Environment: "sandbox", Node: reg.Node, Secret: reg.Secret})
	if err != nil || renewed.Node != reg.Node || renewed.Secret != reg.Secret {
		t.Fatalf("renewal: %+v, %v; want node %s", renewed, err, reg.Node)
	}
	if _, err := in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret}); err != nil {
		t.Fatalf("publish after renewal: %v", err)
	}
}

// TestTokenIsNotEnough: the attacks of issue 12 on the core. A party that knows a victim's token
// (every XMPP server that serves a token-node registration sees it) registers it too: it gets a
// registration of its own, and neither that nor anything else it can do without the victim's
// secret reads back, unregisters or silences the victim's registration.
func TestTokenIsNotEnough(t *testing.T) {
	p := &testenv.Producer{}
	in, devs := newCore(t, p, nil)
	ctx := context.Background()
	register := func(req core.RegisterRequest) core.Registered {
		t.Helper()
		req.App, req.Token = testenv.IOSApp, testenv.APNsToken
		r, err := in.Register(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	victim := register(core.RegisterRequest{Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API})
	victimAdhoc := register(core.RegisterRequest{Account: "victim@example.org", Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC})
	attacker := register(core.RegisterRequest{Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API})
	attackerAdhoc := register(core.RegisterRequest{Account: "mallory@evil.example", Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC})
	// Presenting the victim's node with a wrong secret to "renew" it is refused, not answered
	// with the victim's secret.
	if r, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken, Node: victim.Node, Secret: attacker.Secret}); core.CodeOf(err) != core.CodeNotAuthorized {
		t.Fatalf("renewing the victim's node with the attacker's secret: %+v, %v", r, err)
	}
	for _, a := range []core.Registered{attacker, attackerAdhoc} {
		for _, v := range []core.Registered{victim, victimAdhoc} {
			if a.DeviceID != v.DeviceID || a.Node == v.Node || a.Secret == v.Secret {
				t.Fatalf("the attacker's registration %+v is not its own (victim %+v)", a, v)
			}
		}
	}

	attacks := []struct {
		name string
		do   func() error
		want core.Code
	}{
		{"unregister the victim's node with the attacker's secret", func() error {
			_, err := in.Unregister(ctx, victim.Node, attacker.Secret, "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API)
			return err
		}, core.CodeNotAuthorized},
		{"the attacker's node with the victim's registration id", func() error {
			node := strings.Replace(attacker.Node, attacker.RegistrationID, victim.RegistrationID, 1)
			_, err := in.Unregister(ctx, node, attacker.Secret, "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API)
			return err
		}, core.CodeNotAuthorized},
		{"unregister its own registration", func() error {
			_, err := in.Unregister(ctx, attacker.Node, attacker.Secret, "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API)
			return err
		}, core.CodeOK},
		{"ad-hoc unregister of the token from another account", func() error {
			_, err := in.UnregisterAccount(ctx, testenv.IOSApp, testenv.APNsToken, "mallory@evil.example", "client", wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC)
			return err
		}, core.CodeOK},
	}
	for _, a := range attacks {
		if err := a.do(); core.CodeOf(err) != a.want {
			t.Fatalf("%s: %v, want %s", a.name, err, a.want)
		}
	}
	// The attacker ended only its own registrations; the victim's keep getting publishes.
	for _, v := range []core.Registered{victim, victimAdhoc} {
		if devs.Unregistered(v.DeviceID, v.RegistrationID) {
			t.Errorf("the victim's registration %s is unregistered", v.Node)
		}
		if _, err := in.Publish(ctx, core.Event{Node: v.Node, Secret: v.Secret}); err != nil {
			t.Errorf("publish to the victim's registration %s: %v", v.Node, err)
		}
	}
	for _, a := range []core.Registered{attacker, attackerAdhoc} {
		if _, err := in.Publish(ctx, core.Event{Node: a.Node, Secret: a.Secret}); core.CodeOf(err) != core.CodeGone {
			t.Errorf("publish to the attacker's unregistered registration %s: %v", a.Node, err)
		}
	}
	// No unregistration record names a registration of the victim.
	for _, r := range p.Records() {
		if reg, ok := r.Msg.(*wakepushv1.Registration); ok && reg.State == wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED &&
			(reg.RegistrationId == victim.RegistrationID || reg.RegistrationId == victimAdhoc.RegistrationID) {
			t.Errorf("an unregistration of the victim's registration was written: %v", reg)
		}
	}
	// The victim's account registering again gets its own registration back, not a new one.
	if again := register(core.RegisterRequest{Account: "victim@example.org"}); again.Node != victimAdhoc.Node || again.Secret != victimAdhoc.Secret {
		t.Errorf("the account's second registration %+v differs from its first %+v", again, victimAdhoc)
	}
}

func TestErrors(t *testing.T) {
	p := &testenv.Producer{}
	in, _ := newCore(t, p, nil)
	ctx := context.Background()
	reg, err := in.Register(ctx, core.RegisterRequest{App: testenv.AndroidApp, Token: "fcm-token:APA91bHPRgkF3JUikC4ENAH"})
	if err != nil {
		t.Fatal(err)
	}
	other := testenv.Keys(t).Register("unknown.app", "fcm", "fcm-token:APA91bHPRgkF3JUikC4ENAH")

	tests := []struct {
		name string
		fn   func() error
		want core.Code
	}{
		{"register unknown app", func() error {
			_, err := in.Register(ctx, core.RegisterRequest{App: "nope", Token: testenv.APNsToken})
			return err
		}, core.CodeUnknownApp},
		{"register bad token", func() error {
			_, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: "xyz"})
			return err
		}, core.CodeMalformed},
		{"register sandbox for fcm", func() error {
			_, err := in.Register(ctx, core.RegisterRequest{App: testenv.AndroidApp, Token: "fcm-token:APA91bHPRgkF3JUikC4ENAH", Environment: "sandbox"})
			return err
		}, core.CodeMalformed},
		{"register bad environment", func() error {
			_, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken, Environment: "staging"})
			return err
		}, core.CodeMalformed},
		{"publish wrong secret", func() error {
			_, err := in.Publish(ctx, core.Event{Node: reg.Node, Secret: flipFirst(reg.Secret)})
			return err
		}, core.CodeNotAuthorized},
		{"publish no secret", func() error {
			_, err := in.Publish(ctx, core.Event{Node: reg.Node})
			return err
		}, core.CodeNotAuthorized},
		{"publish foreign node", func() error {
			_, err := in.Publish(ctx, core.Event{Node: testenv.APNsToken, Secret: "x"})
			return err
		}, core.CodeUnknownNode},
		{"publish empty node", func() error {
			_, err := in.Publish(ctx, core.Event{})
			return err
		}, core.CodeMalformed},
		{"publish unknown kid", func() error {
			_, err := in.Publish(ctx, core.Event{Node: "v1.gone" + reg.Node[4:], Secret: reg.Secret})
			return err
		}, core.CodeNotAuthorized},
		{"publish app no longer served", func() error {
			_, err := in.Publish(ctx, core.Event{Node: other.Node, Secret: other.Secret})
			return err
		}, core.CodeUnknownApp},
		{"receipt without wake id", func() error {
			_, err := in.Receipt(ctx, reg.Node, reg.Secret, "", time.Time{})
			return err
		}, core.CodeMalformed},
		{"receipt wrong secret", func() error {
			_, err := in.Receipt(ctx, reg.Node, "nope", "w1", time.Time{})
			return err
		}, core.CodeNotAuthorized},
		{"unregister wrong secret", func() error {
			_, err := in.Unregister(ctx, reg.Node, "nope", "client", 0)
			return err
		}, core.CodeNotAuthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := core.CodeOf(tt.fn()); got != tt.want {
				t.Fatalf("code %s, want %s", got, tt.want)
			}
		})
	}
	if n := len(p.Records()); n != 1 {
		t.Fatalf("failed requests produced records: %d", n)
	}
}

func TestKafkaFailure(t *testing.T) {
	p := &testenv.Producer{}
	in, _ := newCore(t, p, nil)
	ctx := context.Background()
	reg, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken})
	if err != nil {
		t.Fatal(err)
	}
	p.SetErr(testenv.ErrKafkaDown)
	_, err = in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret})
	if core.CodeOf(err) != core.CodeUnavailable || !errors.Is(err, testenv.ErrKafkaDown) {
		t.Fatalf("publish with Kafka down: %v", err)
	}
	if _, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken}); core.CodeOf(err) != core.CodeUnavailable {
		t.Fatalf("register with Kafka down: %v", err)
	}
	// A producer that never acknowledges: the produce timeout (1s) answers unavailable.
	p.SetErr(nil)
	p.SetGate(make(chan struct{}))
	start := time.Now()
	_, err = in.Receipt(ctx, reg.Node, reg.Secret, "w1", time.Now())
	if core.CodeOf(err) != core.CodeUnavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("receipt with a hung producer: %v after %s", err, time.Since(start))
	}
}

func TestDetailOf(t *testing.T) {
	wrapped := fmt.Errorf("publish: %w", &core.Error{Code: core.CodeMalformed, Detail: "missing node"})
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("plain"), ""},
		{wrapped, "missing node"},
	} {
		if got := core.DetailOf(tt.err); got != tt.want {
			t.Errorf("DetailOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// flipFirst returns s with its first byte changed: a secret that differs from
// the real one whatever the random secret starts with.
func flipFirst(s string) string {
	if s[0] == 'x' {
		return "y" + s[1:]
	}
	return "x" + s[1:]
}
