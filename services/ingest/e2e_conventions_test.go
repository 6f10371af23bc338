package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// startIngest runs the ingest binary against Kafka and Prosody's component port with extra
// environment, and waits until its component is connected.
func startIngest(t testing.TB, kcfg *kafkax.Config, srv *prosody.Server, extra ...string) (p *stacktest.Process, httpAddr string) {
	p, httpAddr, _ = startIngestAdmin(t, kcfg, srv, extra...)
	return p, httpAddr
}

// startIngestAdmin is startIngest that also returns the admin address (/livez, /readyz, /metrics).
func startIngestAdmin(t testing.TB, kcfg *kafkax.Config, srv *prosody.Server, extra ...string) (p *stacktest.Process, httpAddr, adminAddr string) {
	t.Helper()
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/ingest")
	httpAddr, adminAddr = stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	env := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + kcfg.Brokers[0],
		"WAKEPUSH_KAFKA_PARTITIONS=3",
		"WAKEPUSH_APPS_FILE=" + testenv.AppsFile(t),
		"WAKEPUSH_NODE_KEYS=" + testenv.NodeKeys,
		"WAKEPUSH_DEVICE_ID_KEY=" + testenv.DeviceIDKey,
		"WAKEPUSH_INGEST_HTTP_ADDR=" + httpAddr,
		"WAKEPUSH_ADMIN_ADDR=" + adminAddr,
		"WAKEPUSH_COMPONENT_BACKOFF_MAX=1s",
		"WAKEPUSH_LOG_FORMAT=text",
	}
	if srv != nil {
		env = append(env, "WAKEPUSH_COMPONENT_ADDR="+srv.ComponentAddr, "WAKEPUSH_COMPONENT_JID="+srv.ComponentJID,
			"WAKEPUSH_COMPONENT_SECRET="+srv.ComponentSecret)
	}
	p = stacktest.StartProcess(t, "ingest", bin, append(env, extra...))
	p.WaitHTTP("http://"+adminAddr+"/readyz", 60*time.Second)
	if srv != nil {
		p.WaitLine("component connected", 15*time.Second)
		srv.WaitLog("External component successfully authenticated", 10*time.Second)
	}
	return p, httpAddr, adminAddr
}

type commandAnswer struct {
	Type    string `xml:"type,attr"`
	Command struct {
		Status string `xml:"status,attr"`
		Fields []struct {
			Var   string `xml:"var,attr"`
			Value string `xml:"value"`
		} `xml:"x>field"`
	} `xml:"command"`
	Items []struct {
		Node string `xml:"node,attr"`
	} `xml:"query>item"`
}

func (a commandAnswer) field(name string) string {
	for _, f := range a.Command.Fields {
		if f.Var == name {
			return f.Value
		}
	}
	return ""
}

func eventsOf(t *testing.T, kcfg *kafkax.Config, deviceID string, timeout time.Duration) []*wakepushv1.PushEvent {
	t.Helper()
	return testenv.Find(t, kcfg, topics.Events, timeout, func() *wakepushv1.PushEvent { return &wakepushv1.PushEvent{} },
		func(e *wakepushv1.PushEvent) bool { return e.DeviceId == deviceID })
}

func registrationsOf(t *testing.T, kcfg *kafkax.Config, deviceID string) []*wakepushv1.Registration {
	t.Helper()
	return testenv.Find(t, kcfg, topics.Registrations, 5*time.Second, func() *wakepushv1.Registration { return &wakepushv1.Registration{} },
		func(r *wakepushv1.Registration) bool { return r.DeviceId == deviceID })
}

// TestProsodyConventions: the p2/Conversations ad-hoc commands and the fpush/Monal token nodes,
// end to end through a real Prosody: registration (or none), enable, offline, message, publish,
// PushEvent in Kafka, with the same device identity as the HTTP API (and a registration of
// their own: the account's, the token node's).
func TestProsodyConventions(t *testing.T) {
	kcfg := testenv.Kafka(t)
	srv := prosody.Start(t, prosody.Options{})
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		srv.CreateUser(u, u+"-pw")
	}
	_, _ = startIngest(t, kcfg, srv,
		"WAKEPUSH_ADHOC_APPS=apns="+testenv.IOSApp+",fcm="+testenv.AndroidApp,
		"WAKEPUSH_PUSH_MODULES=monalProdiOS="+testenv.IOSApp+":"+srv.Domain+",strict="+testenv.IOSApp+":other.example")
	keys := testenv.Keys(t)

	// --- p2/Conversations: ad-hoc command to the component JID, routed by Prosody. ---
	alice := srv.Login(t, "alice", "alice-pw")
	var items commandAnswer
	alice.IQTo("get", srv.ComponentJID, `<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>`, &items)
	if items.Type != "result" || len(items.Items) != 4 {
		t.Fatalf("disco#items of the commands: %+v", items)
	}
	var ans commandAnswer
	alice.IQTo("set", srv.ComponentJID, `<command xmlns='http://jabber.org/protocol/commands' node='register-push-apns' action='execute'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>https://p2.siacs.eu/push</value></field>`+
		`<field var='token'><value>`+testenv.APNsToken+`</value></field><field var='android-id'><value>0123abcd</value></field></x></command>`, &ans)
	aliceDev := keys.DeviceID(testenv.IOSApp, "apns", testenv.APNsToken)
	want := keys.RegistrationOf(aliceDev, keys.AccountRegistrationID(aliceDev, srv.JID("alice")), testenv.IOSApp)
	if ans.Type != "result" || ans.Command.Status != "completed" || ans.field("jid") != srv.ComponentJID ||
		ans.field("node") != want.Node || ans.field("secret") != want.Secret {
		t.Fatalf("register-push-apns answer %+v, want node %s", ans, want.Node)
	}
	if regs := registrationsOf(t, kcfg, want.DeviceID); len(regs) != 1 || regs[0].Source != wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC ||
		regs[0].RegistrationId != want.RegistrationID {
		t.Fatalf("registrations %v", regs)
	}
	alice.EnablePush(ans.field("jid"), ans.field("node"), ans.field("secret"))
	alice.Close()
	bob := srv.Login(t, "bob", "bob-pw")
	bob.Message(srv.JID("alice"), "hello alice")
	if evs := eventsOf(t, kcfg, want.DeviceID, 20*time.Second); len(evs) != 1 || !evs[0].Important || evs[0].Sender != srv.Domain {
		t.Fatalf("events %v", evs)
	}

	// --- fpush/Monal: node = the APNs token, pushModule in the form, no secret. ---
	monalToken := strings.Repeat("0f", 32)
	monalDev := keys.DeviceID(testenv.IOSApp, "apns", monalToken)
	monal := keys.RegistrationOf(monalDev, keys.TokenNodeRegistrationID(monalDev, "sandbox"), testenv.IOSApp)
	carol := srv.Login(t, "carol", "carol-pw")
	carol.EnablePushFields(srv.ComponentJID, strings.ToUpper(monalToken), "pushModule", "monalProdiOS-sandbox")
	carol.Close()
	bob.Message(srv.JID("carol"), "hello carol")
	evs := eventsOf(t, kcfg, monal.DeviceID, 20*time.Second)
	if len(evs) != 1 || !evs[0].Important || evs[0].Node != monal.Node || evs[0].App != testenv.IOSApp {
		t.Fatalf("events %v", evs)
	}
	regs := registrationsOf(t, kcfg, monal.DeviceID)
	if len(regs) != 1 || regs[0].Source != wakepushv1.RegistrationSource_REGISTRATION_SOURCE_TOKEN_NODE || regs[0].Token != monalToken ||
		regs[0].Environment != wakepushv1.Environment_ENVIRONMENT_SANDBOX || regs[0].RegistrationId != monal.RegistrationID {
		t.Fatalf("registrations %v", regs)
	}

	// A push module that this server may not use: auth/forbidden, nothing recorded.
	dave := srv.Login(t, "dave", "dave-pw")
	daveToken := strings.Repeat("1e", 32)
	dave.EnablePushFields(srv.ComponentJID, daveToken, "pushModule", "strict")
	dave.Close()
	bob.Message(srv.JID("dave"), "hello dave")
	srv.WaitLog(`Got error <auth:forbidden:server "localhost" may not publish to pushModule "strict">`, 15*time.Second)

	// --- unregister-push-apns: alice's registration ends, Prosody gets item-not-found. ---
	alice = srv.Login(t, "alice", "alice-pw")
	var un commandAnswer
	alice.IQTo("set", srv.ComponentJID, `<command xmlns='http://jabber.org/protocol/commands' node='unregister-push-apns' action='execute'>`+
		`<x xmlns='jabber:x:data' type='submit'><field var='token'><value>`+testenv.APNsToken+`</value></field>`+
		`<field var='android-id'><value>0123abcd</value></field></x></command>`, &un)
	if un.Type != "result" || un.Command.Status != "completed" {
		t.Fatalf("unregister answer %+v", un)
	}
	alice.Close()
	bob.Message(srv.JID("alice"), "still there?")
	srv.WaitLog("Got error <cancel:item-not-found:the device is unregistered>", 15*time.Second)
	if n := len(eventsOf(t, kcfg, want.DeviceID, time.Second)); n != 1 {
		t.Fatalf("%d events for alice's device, want 1", n)
	}
	if n := len(eventsOf(t, kcfg, testenv.Keys(t).DeviceID(testenv.IOSApp, "apns", daveToken), time.Second)); n != 0 {
		t.Fatalf("%d events for a forbidden publish", n)
	}
}
