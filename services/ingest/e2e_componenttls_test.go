package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/deploy/local/testcert"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

// TestProsodyComponentTLS runs the ingest binary against a real Prosody whose component
// connection is direct TLS (mod_net_multiplex's ssl_ports): with the CA it connects and a
// publish from mod_cloud_notify crosses the TLS connection into push.events; without the CA it
// never gets past the TLS handshake.
func TestProsodyComponentTLS(t *testing.T) {
	kcfg := testenv.Kafka(t)
	ca := testcert.NewCA(t)
	cert := ca.Server(t, "127.0.0.1")
	srv := prosody.Start(t, prosody.Options{ComponentTLS: &prosody.CertFiles{CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	srv.CreateUser("alice", "alice-pw")
	srv.CreateUser("bob", "bob-pw")

	p, httpAddr, _ := startIngestAdmin(t, kcfg, nil,
		"WAKEPUSH_COMPONENTS="+srv.ComponentJID+"@"+srv.SecureComponentAddr+";tls;ca="+ca.CertFile,
		"WAKEPUSH_COMPONENT_SECRET="+srv.ComponentSecret,
		"WAKEPUSH_COMPONENT_READINESS=all")
	p.WaitLine("component connected", 15*time.Second)
	srv.WaitLog("External component successfully authenticated", 10*time.Second)

	status, reg := postJSON(t, "http://"+httpAddr+"/v1/registrations", map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken})
	if status != 200 || reg["jid"] != srv.ComponentJID {
		t.Fatalf("register: %d %v", status, reg)
	}
	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(srv.ComponentJID, reg["node"].(string), reg["secret"].(string))
	alice.Close()
	bob := srv.Login(t, "bob", "bob-pw")
	bob.Message(srv.JID("alice"), "over tls")
	deviceID := reg["device_id"].(string)
	events := testenv.Find(t, kcfg, topics.Events, 20*time.Second, func() *wakepushv1.PushEvent { return &wakepushv1.PushEvent{} },
		func(e *wakepushv1.PushEvent) bool { return e.DeviceId == deviceID })
	if len(events) != 1 || events[0].Source != wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT {
		t.Fatalf("events %v", events)
	}
	if strings.Contains(p.Output(), "plain TCP") {
		t.Error("a TLS connection was reported as plain TCP")
	}

	// Without the CA: the system roots do not know the test CA.
	q, _, _ := startIngestAdmin(t, kcfg, nil,
		"WAKEPUSH_COMPONENTS="+srv.ComponentJID+"@"+srv.SecureComponentAddr+";tls",
		"WAKEPUSH_COMPONENT_SECRET="+srv.ComponentSecret)
	q.WaitLine("certificate signed by unknown authority", 15*time.Second)
	if strings.Contains(q.Output(), "component connected") {
		t.Fatal("connected without trusting the server's CA")
	}
}
