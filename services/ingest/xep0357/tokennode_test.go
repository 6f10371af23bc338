package xep0357_test

import (
	"context"
	"strings"
	"testing"
	"time"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/ingest/xep0357"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

// tokenPublish is a publish of the fpush/Monal convention as Prosody sends it: node = the APNs
// token, the client's form (echoed in publish-options) carries pushModule and no secret.
func tokenPublish(t *testing.T, from, token, module string) xmpp.IQ {
	return parseIQ(t, `<iq type='set' id='p' from='`+from+`' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'>`+
		`<publish node='`+token+`'><item><notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='form'>`+
		`<field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field><field var='message-count'><value>1</value></field>`+
		`<field var='last-message-sender'><value>bob@example.com/x</value></field>`+
		`<field var='last-message-body'><value>New Message!</value></field></x></notification></item></publish>`+
		`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`+
		`<field var='pushModule'><value>`+module+`</value></field></x></publish-options></pubsub></iq>`)
}

func TestHandlePublishTokenNode(t *testing.T) {
	p := &testenv.Producer{}
	devs := devices.New()
	mods, err := core.ParsePushModules("monalProdiOS=" + testenv.IOSApp + ":example.com|example.net, open=" + testenv.IOSApp)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: p, Devices: devs, ProduceTimeout: time.Second,
		Now: func() time.Time { return now },
		TokenNodes: &core.TokenNodeConfig{Modules: mods,
			SenderRate: core.Rate{PerSecond: 1, Burst: 4}, DeviceRate: core.Rate{PerSecond: 1, Burst: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	h := xep0357.NewHandler(in)
	ctx := context.Background()
	upper := strings.ToUpper(testenv.APNsToken)
	keys := testenv.Keys(t)
	dev := keys.DeviceID(testenv.IOSApp, "apns", testenv.APNsToken)
	want := keys.RegistrationOf(dev, keys.TokenNodeRegistrationID(dev, "sandbox"), testenv.IOSApp)

	// First sight: a TOKEN_NODE registration (sandbox), then the event; same device id as the
	// HTTP API gives for that token (in any case), the token node's own registration.
	if _, serr := h.HandlePublish(ctx, tokenPublish(t, "example.com", upper, "monalProdiOS-sandbox")); serr != nil {
		t.Fatal(serr)
	}
	recs := p.Records()
	if len(recs) != 2 || recs[0].Topic != topics.Registrations || recs[1].Topic != topics.Events {
		t.Fatalf("records %+v", recs)
	}
	reg := recs[0].Msg.(*wakepushv1.Registration)
	if reg.DeviceId != want.DeviceID || reg.RegistrationId != want.RegistrationID || recs[0].Key != want.DeviceID+"/"+want.RegistrationID ||
		reg.Token != testenv.APNsToken || reg.Source != wakepushv1.RegistrationSource_REGISTRATION_SOURCE_TOKEN_NODE ||
		reg.Environment != wakepushv1.Environment_ENVIRONMENT_SANDBOX || reg.State != wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE {
		t.Fatalf("registration %v", reg)
	}
	ev := recs[1].Msg.(*wakepushv1.PushEvent)
	if ev.DeviceId != want.DeviceID || ev.Node != want.Node || !ev.Important || ev.Sender != "example.com" || ev.App != testenv.IOSApp {
		t.Fatalf("event %v", ev)
	}
	for _, r := range recs {
		if strings.Contains(r.Msg.(interface{ String() string }).String(), "bob@") {
			t.Fatal("a record carries the sender")
		}
	}

	// Second publish: the device is known, only the event. The device bucket (burst 2) is then
	// empty: wait/resource-constraint, nothing recorded.
	if _, serr := h.HandlePublish(ctx, tokenPublish(t, "example.com", testenv.APNsToken, "monalProdiOS-sandbox")); serr != nil {
		t.Fatal(serr)
	}
	if n := len(p.Records()); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
	check := func(name string, iq xmpp.IQ, typ, cond string) {
		t.Helper()
		before := len(p.Records())
		_, serr := h.HandlePublish(ctx, iq)
		if serr == nil || serr.Type != typ || serr.Condition != cond {
			t.Fatalf("%s: answer %v, want %s/%s", name, serr, typ, cond)
		}
		if len(p.Records()) != before {
			t.Fatalf("%s: a refused publish was recorded", name)
		}
	}
	check("device rate", tokenPublish(t, "example.com", testenv.APNsToken, "monalProdiOS"), "wait", "resource-constraint")
	now = now.Add(time.Second) // one token back
	if _, serr := h.HandlePublish(ctx, tokenPublish(t, "example.com", testenv.APNsToken, "monalProdiOS-sandbox")); serr != nil {
		t.Fatal(serr)
	}
	// The sender bucket (burst 4, refused publishes count too) has one token left: another
	// device from the same server gets it, then waits.
	other := strings.Repeat("ab", 32)
	if _, serr := h.HandlePublish(ctx, tokenPublish(t, "example.com", other, "monalProdiOS")); serr != nil {
		t.Fatal(serr)
	}
	check("sender rate", tokenPublish(t, "example.com", other, "monalProdiOS"), "wait", "resource-constraint")

	check("domain not allowed", tokenPublish(t, "evil.example", other, "monalProdiOS"), "auth", "forbidden")
	check("unknown module", tokenPublish(t, "example.com", other, "otherApp"), "cancel", "item-not-found")
	check("not a token", tokenPublish(t, "example.net", "not-hex-at-all-xyz", "monalProdiOS"), "cancel", "item-not-found")
	third := strings.Repeat("cd", 32)
	p.SetErr(testenv.ErrKafkaDown)
	check("kafka down", tokenPublish(t, "other.example", third, "open"), "wait", "internal-server-error")
	p.SetErr(nil)
	// The provider declared the sandbox token node dead (only the sender writes that).
	devs.Apply(&wakepushv1.Registration{DeviceId: want.DeviceID, RegistrationId: want.RegistrationID, State: wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED})
	now = now.Add(time.Minute)
	check("unregistered", tokenPublish(t, "example.com", testenv.APNsToken, "monalProdiOS-sandbox"), "cancel", "item-not-found")
	// The token node in production is a registration of its own: publishing there (who knows
	// the token can, from an allowed server) neither revives nor replaces the sandbox one.
	if _, serr := h.HandlePublish(ctx, tokenPublish(t, "example.com", testenv.APNsToken, "monalProdiOS")); serr != nil {
		t.Fatal(serr)
	}
	recs = p.Records()
	if prod := recs[6].Msg.(*wakepushv1.Registration); len(recs) != 8 || prod.RegistrationId != keys.TokenNodeRegistrationID(dev, "production") ||
		prod.Environment != wakepushv1.Environment_ENVIRONMENT_PRODUCTION || !devs.Unregistered(want.DeviceID, want.RegistrationID) {
		t.Fatalf("records %+v", recs)
	}

	// The registration failed while Kafka was down: the device is still unseen and the next
	// publish writes it first.
	if _, serr := h.HandlePublish(ctx, tokenPublish(t, "other.example", third, "open")); serr != nil {
		t.Fatal(serr)
	}
	recs = p.Records()
	if n := len(recs); n != 10 || recs[8].Topic != topics.Registrations || recs[9].Topic != topics.Events {
		t.Fatalf("records %+v", recs)
	}
}

func TestParsePushModulesAndRates(t *testing.T) {
	m, err := core.ParsePushModules(" monalProdiOS = im.monal.app : a.example | B.example ,x=y")
	if err != nil || m["monalProdiOS"].App != "im.monal.app" || len(m["monalProdiOS"].Domains) != 2 || m["monalProdiOS"].Domains[1] != "b.example" || len(m["x"].Domains) != 0 {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{"noequals", "a-sandbox=b", "a=b,a=c", "=b"} {
		if _, err := core.ParsePushModules(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	r, err := core.ParseRate("30/m:5")
	if err != nil || r.PerSecond != 0.5 || r.Burst != 5 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"5", "5/d", "-1/s", "1/s:0"} {
		if _, err := core.ParseRate(bad); err == nil {
			t.Errorf("rate %q accepted", bad)
		}
	}
}
