package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// TestProsodyTokenIsNotEnough (issue 12 item 1): with the ingest binary and a real Prosody, three
// phones are registered by the three conventions (alice through the HTTP API, carol through the
// ad-hoc command, dave as a Monal token node). An attacker knows all three tokens (any XMPP
// server serving a token node sees them) and does everything a token allows: registering each
// token over HTTP (it gets registrations of its own, never the victims' node or secret),
// unregistering a victim's node with its own secret (refused), unregistering its own
// registrations, and, as another account on the same server, the ad-hoc register and unregister
// commands for each token. Afterwards every victim still gets its wakes: Prosody's publishes are
// all answered with a result. Then the provider (the sender, after APNs 410) declares dave's
// token dead: the next publish for him is answered item-not-found.
func TestProsodyTokenIsNotEnough(t *testing.T) {
	kcfg := testenv.Kafka(t)
	srv := prosody.Start(t, prosody.Options{})
	for _, u := range []string{"alice", "bob", "carol", "dave", "mallory"} {
		srv.CreateUser(u, u+"-pw")
	}
	_, httpAddr := startIngest(t, kcfg, srv,
		"WAKEPUSH_ADHOC_APPS=apns="+testenv.IOSApp,
		"WAKEPUSH_PUSH_MODULES=monalProdiOS="+testenv.IOSApp+":"+srv.Domain)
	api := "http://" + httpAddr
	keys := testenv.Keys(t)
	aliceTok, carolTok, daveTok := testenv.APNsToken, strings.Repeat("2b", 32), strings.Repeat("3c", 32)
	dev := func(tok string) string { return keys.DeviceID(testenv.IOSApp, "apns", tok) }
	register := func(tok string, extra ...string) map[string]any {
		t.Helper()
		body := map[string]string{"app": testenv.IOSApp, "token": tok}
		for i := 0; i+1 < len(extra); i += 2 {
			body[extra[i]] = extra[i+1]
		}
		status, out := postJSON(t, api+"/v1/registrations", body)
		if status != 200 {
			t.Fatalf("register: %d %v", status, out)
		}
		return out
	}
	adhoc := func(c *prosody.Client, command, tok string) commandAnswer {
		t.Helper()
		var ans commandAnswer
		c.IQTo("set", srv.ComponentJID, `<command xmlns='http://jabber.org/protocol/commands' node='`+command+`' action='execute'>`+
			`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>https://p2.siacs.eu/push</value></field>`+
			`<field var='token'><value>`+tok+`</value></field><field var='android-id'><value>0123abcd</value></field></x></command>`, &ans)
		if ans.Type != "result" || ans.Command.Status != "completed" {
			t.Fatalf("%s answered %+v", command, ans)
		}
		return ans
	}

	// The victims enable push and go offline.
	aliceReg := register(aliceTok)
	aliceNode, aliceSecret := aliceReg["node"].(string), aliceReg["secret"].(string)
	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(srv.ComponentJID, aliceNode, aliceSecret)
	alice.Close()
	carol := srv.Login(t, "carol", "carol-pw")
	carolReg := adhoc(carol, "register-push-apns", carolTok)
	carol.EnablePush(carolReg.field("jid"), carolReg.field("node"), carolReg.field("secret"))
	carol.Close()
	dave := srv.Login(t, "dave", "dave-pw")
	dave.EnablePushFields(srv.ComponentJID, daveTok, "pushModule", "monalProdiOS")
	dave.Close()
	victims := map[string]string{aliceTok: aliceNode, carolTok: carolReg.field("node")}

	// The attacker over HTTP: its own registrations only.
	for _, tok := range []string{aliceTok, carolTok, daveTok} {
		att := register(tok)
		node, secret := att["node"].(string), att["secret"].(string)
		if att["device_id"] != dev(tok) || node == victims[tok] || secret == aliceSecret || secret == carolReg.field("secret") {
			t.Fatalf("registering a victim's token returned %v", att)
		}
		if victims[tok] != "" {
			if status, out := postJSON(t, api+"/v1/registrations/unregister", map[string]string{"node": victims[tok], "secret": secret}); status != 403 {
				t.Fatalf("unregistering a victim's node with the attacker's secret: %d %v", status, out)
			}
			if status, out := postJSON(t, api+"/v1/registrations", map[string]string{"app": testenv.IOSApp, "token": tok, "node": victims[tok], "secret": secret}); status != 403 {
				t.Fatalf("renewing a victim's node with the attacker's secret: %d %v", status, out)
			}
		}
		if status, out := postJSON(t, api+"/v1/registrations/unregister", map[string]string{"node": node, "secret": secret}); status != 200 {
			t.Fatalf("unregistering its own registration: %d %v", status, out)
		}
	}
	// The attacker as another account of the victims' server: the ad-hoc commands.
	mallory := srv.Login(t, "mallory", "mallory-pw")
	for _, tok := range []string{aliceTok, carolTok, daveTok} {
		if ans := adhoc(mallory, "register-push-apns", tok); ans.field("node") == victims[tok] || ans.field("secret") == carolReg.field("secret") {
			t.Fatalf("register-push-apns of a victim's token from another account answered %+v", ans)
		}
		adhoc(mallory, "unregister-push-apns", tok)
	}
	mallory.Close()

	// Every victim still gets its wakes.
	bob := srv.Login(t, "bob", "bob-pw")
	for _, v := range []struct{ user, tok string }{{"alice", aliceTok}, {"carol", carolTok}, {"dave", daveTok}} {
		bob.Message(srv.JID(v.user), "hello "+v.user)
		if evs := eventsOf(t, kcfg, dev(v.tok), 20*time.Second); len(evs) != 1 {
			t.Fatalf("%s: %d events after the attacks, want 1", v.user, len(evs))
		}
	}
	if log := srv.Log(); strings.Contains(log, "Got error <") {
		t.Fatalf("Prosody got an error answer to a publish after the attacks:\n%s", log)
	}

	// Only the provider ends a token node: the sender's unregistration after APNs 410.
	prod, err := kafkax.NewProducer(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	daveReg := keys.TokenNodeRegistrationID(dev(daveTok), "production")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := prod.Produce(ctx, kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(dev(daveTok), daveReg), Msg: &wakepushv1.Registration{
		Id: records.NewID(), CreatedAt: records.Timestamp(time.Now()), DeviceId: dev(daveTok), RegistrationId: daveReg, App: testenv.IOSApp,
		Platform: wakepushv1.Platform_PLATFORM_APNS, Token: daveTok, State: wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED,
		Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER, Reason: "apns:Unregistered", ProviderInvalidAt: records.Timestamp(time.Now()),
	}}); err != nil {
		t.Fatal(err)
	}
	const gone = "Got error <cancel:item-not-found:the device is unregistered>"
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(srv.Log(), gone) {
		if time.Now().After(deadline) {
			t.Fatal("no item-not-found for dave after the provider declared his token dead")
		}
		bob.Message(srv.JID("dave"), "are you there?") // ingest reads the record within ms
		time.Sleep(time.Second)
	}
}
