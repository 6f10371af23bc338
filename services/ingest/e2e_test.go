package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func postJSON(t *testing.T, url string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// TestProsodyEndToEnd runs the ingest binary against a real Prosody and Kafka: a client enables
// push with a node and secret from the HTTP API, goes offline, receives a message; Prosody's
// mod_cloud_notify publishes to the ingest component; the event lands in push.events and
// Prosody gets the IQ answers that make it keep, count or drop the registration.
func TestProsodyEndToEnd(t *testing.T) {
	kcfg := testenv.Kafka(t)
	srv := prosody.Start(t, prosody.Options{})
	srv.CreateUser("alice", "alice-pw")
	srv.CreateUser("bob", "bob-pw")
	srv.CreateUser("carol", "carol-pw")

	bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/ingest")
	httpAddr, adminAddr := stacktest.FreeAddr(t), stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, "ingest", bin, []string{
		"WAKEPUSH_KAFKA_BROKERS=" + kcfg.Brokers[0],
		"WAKEPUSH_KAFKA_PARTITIONS=3",
		"WAKEPUSH_APPS_FILE=" + testenv.AppsFile(t),
		"WAKEPUSH_NODE_KEYS=" + testenv.NodeKeys,
		"WAKEPUSH_DEVICE_ID_KEY=" + testenv.DeviceIDKey,
		"WAKEPUSH_INGEST_HTTP_ADDR=" + httpAddr,
		"WAKEPUSH_ADMIN_ADDR=" + adminAddr,
		"WAKEPUSH_COMPONENT_ADDR=" + srv.ComponentAddr,
		"WAKEPUSH_COMPONENT_JID=" + srv.ComponentJID,
		"WAKEPUSH_COMPONENT_SECRET=" + srv.ComponentSecret,
		"WAKEPUSH_COMPONENT_BACKOFF_MAX=1s",
		"WAKEPUSH_LOG_FORMAT=text",
		"WAKEPUSH_LOG_LEVEL=debug",
	})
	p.WaitHTTP("http://"+adminAddr+"/readyz", 60*time.Second)
	p.WaitLine("component connected", 15*time.Second)
	srv.WaitLog("External component successfully authenticated", 10*time.Second)

	// Register the phone through the HTTP API.
	status, reg := postJSON(t, "http://"+httpAddr+"/v1/registrations", map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken})
	if status != 200 || reg["jid"] != srv.ComponentJID {
		t.Fatalf("register: %d %v", status, reg)
	}
	node, secret, deviceID := reg["node"].(string), reg["secret"].(string), reg["device_id"].(string)

	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(srv.ComponentJID, node, secret)
	alice.Close() // offline: messages go to offline storage, and mod_cloud_notify publishes
	bob := srv.Login(t, "bob", "bob-pw")

	const body = "the body must never leave prosody"
	bob.Message(srv.JID("alice"), body)
	events := testenv.Find(t, kcfg, topics.Events, 20*time.Second, func() *wakepushv1.PushEvent { return &wakepushv1.PushEvent{} },
		func(e *wakepushv1.PushEvent) bool { return e.DeviceId == deviceID })
	if len(events) != 1 {
		t.Fatalf("%d events for the device, want 1", len(events))
	}
	ev := events[0]
	if ev.Source != wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT || ev.Sender != srv.Domain || ev.Node != node ||
		!ev.Important || ev.MessageCount != 1 || ev.Urgent || ev.App != testenv.IOSApp || ev.Platform != wakepushv1.Platform_PLATFORM_APNS {
		t.Fatalf("event %v", ev)
	}
	for _, m := range testenv.ReadAll(t, kcfg, topics.Events) {
		if bytes.Contains(m.Value, []byte(body)) || bytes.Contains(m.Value, []byte("New Message!")) || bytes.Contains(m.Value, []byte("bob@")) {
			t.Fatal("an event record carries message content or the sender")
		}
	}
	srv.WaitLog("Sending important push notification for alice@localhost to push.localhost", 5*time.Second)

	// A wrong secret: ingest answers auth/not-authorized, which Prosody counts.
	carol := srv.Login(t, "carol", "carol-pw")
	carol.EnablePush(srv.ComponentJID, node, "not-the-secret")
	carol.Close()
	bob.Message(srv.JID("carol"), "hello carol")
	srv.WaitLog("Got error <auth:not-authorized:wrong secret for node>", 15*time.Second)
	srv.WaitLog("error count for this identifier is now at 1", 5*time.Second)

	// Unregistered device: cancel/item-not-found, the signal for servers to stop.
	if status, out := postJSON(t, "http://"+httpAddr+"/v1/registrations/unregister", map[string]string{"node": node, "secret": secret}); status != 200 {
		t.Fatalf("unregister: %d %v", status, out)
	}
	bob.Message(srv.JID("alice"), "are you there?")
	srv.WaitLog("Got error <cancel:item-not-found:the device is unregistered>", 15*time.Second)

	// Registering the token again without the registration's own node and secret is another
	// registration: alice's stays unregistered.
	if status, out := postJSON(t, "http://"+httpAddr+"/v1/registrations", map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken}); status != 200 || out["node"] == node {
		t.Fatalf("register again: %d %v", status, out)
	}
	bob.Message(srv.JID("alice"), "still unregistered?")
	srv.WaitLogCount("Got error <cancel:item-not-found:the device is unregistered>", 2, 15*time.Second)

	// Renewing it with its node and secret re-activates it; the IQ result resets Prosody's
	// error count for alice's registration, which proves Prosody received the result.
	if status, out := postJSON(t, "http://"+httpAddr+"/v1/registrations", map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken, "node": node, "secret": secret}); status != 200 || out["node"] != node {
		t.Fatalf("renew: %d %v", status, out)
	}
	bob.Message(srv.JID("alice"), "back again")
	srv.WaitLog("Push succeeded, error count for identifier 'push.localhost<"+node+"' is now at 0 again", 15*time.Second)
	if n := len(testenv.Find(t, kcfg, topics.Events, 5*time.Second, func() *wakepushv1.PushEvent { return &wakepushv1.PushEvent{} },
		func(e *wakepushv1.PushEvent) bool { return e.DeviceId == deviceID })); n != 2 {
		t.Fatalf("%d events for the device, want 2 (none while unregistered)", n)
	}

	// Neither ingest nor Prosody's publish path leaked content into ingest's log.
	if strings.Contains(p.Output(), body) || strings.Contains(p.Output(), secret) {
		t.Fatal("ingest logged a message body or a node secret")
	}

	// SIGTERM: ingest drains, closes its component stream and exits 0.
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(30 * time.Second); err != nil {
		t.Fatalf("ingest exit: %v", err)
	}
	p.WaitLine("component disconnected (drained)", time.Second)
	srv.WaitLog("component disconnected: "+srv.ComponentJID, 5*time.Second)
}

// TestProsodyKafkaDown: with Kafka failing, publishes are answered wait/internal-server-error,
// which Prosody logs without counting it against the registration.
func TestProsodyKafkaDown(t *testing.T) {
	srv := prosody.Start(t, prosody.Options{})
	srv.CreateUser("alice", "alice-pw")
	srv.CreateUser("bob", "bob-pw")

	producer := &testenv.Producer{}
	producer.SetErr(testenv.ErrKafkaDown)
	devs := devices.New()
	devs.MarkCaughtUp()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ing, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: producer, Devices: devs,
		ComponentJID: srv.ComponentJID, ProduceTimeout: time.Second, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	comp, err := newComponent(component.Config{Addr: srv.ComponentAddr, JID: srv.ComponentJID, Secret: srv.ComponentSecret, Log: log}, ing, nil, core.Rate{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { comp.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	srv.WaitLog("External component successfully authenticated", 10*time.Second)

	reg := testenv.Keys(t).Register(testenv.IOSApp, "apns", testenv.APNsToken)
	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(srv.ComponentJID, reg.Node, reg.Secret)
	alice.Close()
	bob := srv.Login(t, "bob", "bob-pw")
	for i := 0; i < 2; i++ {
		bob.Message(srv.JID("alice"), "while Kafka is down")
		srv.WaitLogCount("Got error <wait:internal-server-error:the event store is unavailable, retry later>", i+1, 15*time.Second)
	}
	if strings.Contains(srv.Log(), "error count for this identifier is now at") {
		t.Fatal("Prosody counted a wait error against the registration")
	}
	// Kafka back: the next publish is accepted.
	producer.SetErr(nil)
	bob.Message(srv.JID("alice"), "Kafka is back")
	deadline := time.Now().Add(15 * time.Second)
	for len(producer.Records()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no event after Kafka came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ev := producer.Records()[0].Msg.(*wakepushv1.PushEvent); ev.DeviceId != reg.DeviceID || !ev.Important {
		t.Fatalf("event %v", ev)
	}
}
