package adhoc_test

import (
	"context"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/adhoc"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

func parseIQ(t *testing.T, s string) xmpp.IQ {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var b xmpp.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			b.Start(tok)
		case xml.CharData:
			b.Text(tok)
		case xml.EndElement:
			if b.End() {
				return xmpp.ParseIQ(b.Root())
			}
		}
	}
}

type result struct {
	Status    string `xml:"status,attr"`
	SessionID string `xml:"sessionid,attr"`
	Fields    []struct {
		Var   string `xml:"var,attr"`
		Value string `xml:"value"`
	} `xml:"x>field"`
}

func (r result) get(name string) string {
	for _, f := range r.Fields {
		if f.Var == name {
			return f.Value
		}
	}
	return ""
}

func command(t *testing.T, node, fields string) xmpp.IQ {
	return commandFrom(t, "alice@example.com/phone", node, fields)
}

func commandFrom(t *testing.T, from, node, fields string) xmpp.IQ {
	x := ""
	if fields != "" {
		x = `<x xmlns='jabber:x:data' type='submit'>` + fields + `</x>`
	}
	return parseIQ(t, `<iq type='set' id='c' from='`+from+`' to='push.example.org'><command xmlns='http://jabber.org/protocol/commands' node='`+node+`' action='execute'>`+x+`</command></iq>`)
}

func field(name, value string) string {
	return `<field var='` + name + `'><value>` + value + `</value></field>`
}

func TestCommands(t *testing.T) {
	p := &testenv.Producer{}
	devs := devices.New()
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: p, Devices: devs, ProduceTimeout: time.Second, ComponentJID: "push.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := adhoc.ParseServices("apns=" + testenv.IOSApp + ", FCM=" + testenv.AndroidApp)
	if err != nil {
		t.Fatal(err)
	}
	c := adhoc.New(in, "push.example.org", svcs, core.Rate{})
	ctx := context.Background()
	run := func(iq xmpp.IQ) result {
		t.Helper()
		payload, serr := c.HandleCommand(ctx, iq)
		if serr != nil {
			t.Fatal(serr)
		}
		var r result
		if err := xml.Unmarshal([]byte(payload), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	// Conversations: one stage, token and android-id. The registration is the account's
	// (alice@example.com, whatever the resource) registration of the device.
	r := run(command(t, "register-push-apns", field("FORM_TYPE", "https://p2.siacs.eu/push")+field("token", strings.ToUpper(testenv.APNsToken))+field("android-id", "abc123")))
	keys := testenv.Keys(t)
	dev := keys.DeviceID(testenv.IOSApp, "apns", testenv.APNsToken)
	want := keys.RegistrationOf(dev, keys.AccountRegistrationID(dev, "alice@example.com"), testenv.IOSApp)
	if r.Status != "completed" || r.get("jid") != "push.example.org" || r.get("node") != want.Node || r.get("secret") != want.Secret {
		t.Fatalf("answer %+v, want %+v", r, want)
	}
	reg := p.Records()[0].Msg.(*wakepushv1.Registration)
	if reg.Source != wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC || reg.DeviceId != want.DeviceID || reg.RegistrationId != want.RegistrationID ||
		reg.App != testenv.IOSApp {
		t.Fatalf("registration %v", reg)
	}
	// The same account from another resource gets the same registration back.
	if r := run(commandFrom(t, "Alice@example.com/laptop", "register-push-apns", field("token", testenv.APNsToken))); r.get("node") != want.Node || r.get("secret") != want.Secret {
		t.Fatalf("the account's second registration %+v, want %+v", r, want)
	}
	// The HTTP API's registration of the same token is the same device, another registration;
	// so is another account's.
	httpReg, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken})
	if err != nil || httpReg.DeviceID != want.DeviceID || httpReg.Node == want.Node {
		t.Fatalf("%+v %v", httpReg, err)
	}
	mallory := run(commandFrom(t, "mallory@evil.example/x", "register-push-apns", field("token", testenv.APNsToken)))
	if mallory.get("node") == "" || mallory.get("node") == want.Node || mallory.get("secret") == want.Secret {
		t.Fatalf("another account registering alice's token got %+v (alice: %+v)", mallory, want)
	}

	// Multi-stage: execute without a form gets the form.
	if r := run(command(t, "register-push-fcm", "")); r.Status != "executing" || r.SessionID == "" || len(r.Fields) == 0 {
		t.Fatalf("answer %+v", r)
	}
	fcmTok := "fcm-token:" + strings.Repeat("x", 40)
	if r := run(command(t, "register-push-fcm", field("token", fcmTok)+field("device-id", "d"))); r.Status != "completed" || !strings.HasSuffix(r.get("node"), "."+testenv.AndroidApp) {
		t.Fatalf("answer %+v", r)
	}

	// A MUC channel's unregister writes nothing; the device's does.
	n := len(p.Records())
	if r := run(command(t, "unregister-push-apns", field("token", testenv.APNsToken)+field("muc", "room@muc.example.com"))); r.Status != "completed" || len(p.Records()) != n {
		t.Fatalf("answer %+v, %d records", r, len(p.Records())-n)
	}
	// Another account unregistering alice's token ends only its own registration.
	if r := run(commandFrom(t, "mallory@evil.example/x", "unregister-push-apns", field("token", testenv.APNsToken))); r.Status != "completed" {
		t.Fatalf("answer %+v", r)
	}
	if devs.Unregistered(want.DeviceID, want.RegistrationID) || devs.Unregistered(httpReg.DeviceID, httpReg.RegistrationID) {
		t.Fatal("another account's unregister-push-apns ended alice's or the app's registration")
	}
	if _, err := in.Publish(ctx, core.Event{Node: want.Node, Secret: want.Secret}); err != nil {
		t.Fatalf("publish to alice's registration after mallory's unregister: %v", err)
	}
	if _, err := in.Publish(ctx, core.Event{Node: mallory.get("node"), Secret: mallory.get("secret")}); core.CodeOf(err) != core.CodeGone {
		t.Fatalf("publish to mallory's own registration after its unregister: %v", err)
	}
	if r := run(command(t, "unregister-push-apns", field("token", testenv.APNsToken)+field("android-id", "abc123"))); r.Status != "completed" {
		t.Fatalf("answer %+v", r)
	}
	if !devs.Unregistered(want.DeviceID, want.RegistrationID) || devs.Unregistered(httpReg.DeviceID, httpReg.RegistrationID) {
		t.Fatal("alice's unregister did not end her registration only")
	}

	for _, tt := range []struct {
		name       string
		iq         xmpp.IQ
		typ, condi string
	}{
		{"unknown command", command(t, "register-push-webpush", field("token", "x")), "cancel", "item-not-found"},
		{"no token", command(t, "register-push-apns", field("android-id", "x")), "modify", "bad-request"},
		{"bad token", command(t, "register-push-apns", field("token", "zz")), "modify", "bad-request"},
	} {
		_, serr := c.HandleCommand(ctx, tt.iq)
		if serr == nil || serr.Type != tt.typ || serr.Condition != tt.condi {
			t.Errorf("%s: %v, want %s/%s", tt.name, serr, tt.typ, tt.condi)
		}
	}
	p.SetErr(testenv.ErrKafkaDown)
	if _, serr := c.HandleCommand(ctx, command(t, "register-push-apns", field("token", testenv.APNsToken))); serr == nil || serr.Type != "wait" {
		t.Fatalf("kafka down: %v", serr)
	}

	items, _ := c.HandleDiscoItems(ctx, parseIQ(t, `<iq type='get' id='d' from='a@b/c'><query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/></iq>`))
	for _, n := range []string{"register-push-apns", "register-push-fcm", "unregister-push-apns", "unregister-push-fcm"} {
		if !strings.Contains(items, "node='"+n+"'") {
			t.Errorf("disco#items %s lacks %s", items, n)
		}
	}
}

func TestParseServices(t *testing.T) {
	for _, bad := range []string{"apns", "webpush=x", "apns=a,apns=b", "apns="} {
		if _, err := adhoc.ParseServices(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCommandsRateLimit(t *testing.T) {
	c := adhoc.New(fakeRegistrar{}, "push.example.org", adhoc.Services{"apns": "im.app"}, core.Rate{PerSecond: 1.0 / 60, Burst: 2})
	ctx := context.Background()
	iq := command(t, "register-push-apns", field("token", strings.Repeat("ab", 32)))
	for i := 0; i < 2; i++ {
		if _, serr := c.HandleCommand(ctx, iq); serr != nil {
			t.Fatal(serr)
		}
	}
	if _, serr := c.HandleCommand(ctx, iq); serr == nil || serr.Type != "wait" || serr.Condition != "resource-constraint" {
		t.Fatalf("third command: %v, want wait/resource-constraint", serr)
	}
	other := parseIQ(t, `<iq type='set' id='c' from='bob@example.com/x' to='push.example.org'><command xmlns='http://jabber.org/protocol/commands' node='register-push-apns'/></iq>`)
	if _, serr := c.HandleCommand(ctx, other); serr != nil {
		t.Fatalf("another account was limited: %v", serr)
	}
}
