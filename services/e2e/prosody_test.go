package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
)

// TestProsodyPublishWakesDevice is the walking skeleton with a real XMPP server: a user enables
// push with the node and secret from our registration API, goes offline, receives a message, and
// Prosody's mod_cloud_notify publish travels through ingest (XEP-0114), the coalescer and the
// sender to a wake at the APNs mock — without the message body anywhere on the way.
func TestProsodyPublishWakesDevice(t *testing.T) {
	srv := prosody.Start(t, prosody.Options{})
	srv.CreateUser("alice", "alice-pw")
	srv.CreateUser("bob", "bob-pw")
	s := startStack(t, &component{Addr: srv.ComponentAddr, JID: srv.ComponentJID, Secret: srv.ComponentSecret})
	srv.WaitLog("External component successfully authenticated", 20*time.Second)

	token := deviceToken(t)
	reg := s.register(token)
	if reg.JID != srv.ComponentJID {
		t.Errorf("registration names App Server JID %q, want the component %q", reg.JID, srv.ComponentJID)
	}
	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(reg.JID, reg.Node, reg.Secret)
	alice.Close() // offline: the message goes to offline storage and mod_cloud_notify publishes

	const body = "the secret plans are in the usual place"
	bob := srv.Login(t, "bob", "bob-pw")
	sent := time.Now()
	bob.Message(srv.JID("alice"), body)

	push := s.waitPushes(token, 1, 20*time.Second)[0]
	t.Logf("Prosody publish → APNs mock wake in %s", push.ReceivedAt.Sub(sent).Round(time.Millisecond))
	if strings.Contains(string(push.Payload), "secret plans") || strings.Contains(string(push.Payload), "bob") {
		t.Errorf("push payload leaks the message: %s", push.Payload)
	}
	// Prosody logs answers only when they are errors (a result is silent unless it resets an
	// error count): it sent the publish and got no error back.
	srv.WaitLog("push notification for alice@", 10*time.Second)
	if log := srv.Log(); strings.Contains(log, "Got error <") || strings.Contains(log, "Unhandled push error") {
		t.Errorf("Prosody got an error answer to its publish")
	}

	s.waitCount(1, 20*time.Second, "SELECT count() FROM events FINAL WHERE device_id = ? AND source = 'XMPP_COMPONENT' AND sender = ?", reg.DeviceID, srv.Domain)
	s.waitCount(1, 20*time.Second, "SELECT count() FROM deliveries FINAL WHERE device_id = ? AND outcome = 'ACCEPTED'", reg.DeviceID)
	for name, p := range s.procs {
		if out := p.Output(); strings.Contains(out, "secret plans") {
			t.Errorf("%s logged the message body", name)
		}
	}
}
