package xep0357_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/ingest/xep0357"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

func TestErrorFor(t *testing.T) {
	for code, want := range map[core.Code][2]string{
		core.CodeMalformed:     {"modify", "bad-request"},
		core.CodeNotAuthorized: {"auth", "not-authorized"},
		core.CodeUnknownNode:   {"cancel", "item-not-found"},
		core.CodeUnknownApp:    {"cancel", "item-not-found"},
		core.CodeGone:          {"cancel", "item-not-found"},
		core.CodeUnavailable:   {"wait", "internal-server-error"},
		core.CodeOverloaded:    {"wait", "resource-constraint"},
		core.CodeShuttingDown:  {"wait", "resource-constraint"},
	} {
		e := xep0357.ErrorFor(&core.Error{Code: code, Detail: "d"})
		if e.Type != want[0] || e.Condition != want[1] {
			t.Errorf("%s → %s/%s, want %s/%s", code, e.Type, e.Condition, want[0], want[1])
		}
	}
	if xep0357.ErrorFor(nil) != nil {
		t.Error("nil error answered with an error")
	}
}

func TestHandlePublish(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	p := &testenv.Producer{}
	devs := devices.New()
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: p, Devices: devs, ProduceTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := xep0357.NewHandler(in)
	reg := testenv.Keys(t).Register(testenv.IOSApp, "apns", testenv.APNsToken)
	publish := func(secret string) xmpp.IQ {
		return parseIQ(t, `<iq type='set' id='p' from='user@Example.COM/x' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'>`+
			`<publish node='`+reg.Node+`'><item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>`+
			`<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field><field var='message-count'><value>1</value></field>`+
			`<field var='last-message-body'><value>New Message!</value></field></x></notification></item></publish>`+
			`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='secret'><value>`+secret+`</value></field></x></publish-options></pubsub></iq>`)
	}

	if _, serr := h.HandlePublish(context.Background(), publish(reg.Secret)); serr != nil {
		t.Fatal(serr)
	}
	recs := p.Records()
	ev := recs[0].Msg.(*wakepushv1.PushEvent)
	if ev.Sender != "example.com" || !ev.Important || ev.MessageCount != 1 || ev.DeviceId != reg.DeviceID || ev.Source != wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT {
		t.Fatalf("event %v", ev)
	}
	// The record's context is the publish's SERVER span.
	sc := trace.SpanContextFromContext(recs[0].Ctx)
	var found bool
	for _, s := range exp.GetSpans().Snapshots() {
		if s.SpanContext().SpanID() == sc.SpanID() && s.SpanKind() == trace.SpanKindServer && s.Name() == "xep0357 publish" {
			found = true
		}
	}
	if !found {
		t.Fatal("no SERVER span is the parent of the produced record")
	}

	tests := []struct {
		name       string
		iq         xmpp.IQ
		setup      func()
		typ, condi string
	}{
		{"wrong secret", publish("nope"), nil, "auth", "not-authorized"},
		{"malformed", parseIQ(t, `<iq type='set' id='m' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='x'/></pubsub></iq>`), nil, "modify", "bad-request"},
		{"kafka down", publish(reg.Secret), func() { p.SetErr(testenv.ErrKafkaDown) }, "wait", "internal-server-error"},
		{"unregistered", publish(reg.Secret), func() {
			p.SetErr(nil)
			devs.Apply(&wakepushv1.Registration{DeviceId: reg.DeviceID, RegistrationId: reg.RegistrationID, State: wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED})
		}, "cancel", "item-not-found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			_, serr := h.HandlePublish(context.Background(), tt.iq)
			if serr == nil || serr.Type != tt.typ || serr.Condition != tt.condi {
				t.Fatalf("answer %v, want %s/%s", serr, tt.typ, tt.condi)
			}
		})
	}
	if n := len(p.Records()); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}
