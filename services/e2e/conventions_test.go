package e2e

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/services/ingest/identity"
)

// What real clients send (mod_cloud_notify's is_important treats each as important: a body, an
// OMEMO <encrypted/>, a Jingle Message Initiation <propose/>).
const (
	// omemoMessage is shaped like Conversations' OMEMO (eu.siacs.conversations.axolotl)
	// message: header with a key per device and the IV, the encrypted payload, the fallback
	// body for clients without OMEMO, and the store hint.
	omemoMessage = `<encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1234567'>` +
		`<key rid='7654321'>MwohBQ8hd0aAwlJ0W2GoxFzoZrkpRg3K5ALmzZS1PrB3SBdJEAAYACIwjXNJmw==</key>` +
		`<iv>7Mx9XeXQ1pBqlLZC</iv></header><payload>fOnWZ0M1Ck1Lz5WH</payload></encrypted>` +
		`<body>I sent you an OMEMO encrypted message but your client doesn’t seem to support that. ` +
		`Find more information on https://conversations.im/omemo</body>` +
		`<store xmlns='urn:xmpp:hints'/>`
	// proposeMessage is a XEP-0353 call proposal (Conversations' audio call).
	proposeMessage = `<propose xmlns='urn:xmpp:jingle-message:0' id='call-4f2e'>` +
		`<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>` +
		`<store xmlns='urn:xmpp:hints'/>`
)

type adhocAnswer struct {
	Type    string `xml:"type,attr"`
	Command struct {
		Status string `xml:"status,attr"`
		Fields []struct {
			Var   string `xml:"var,attr"`
			Value string `xml:"value"`
		} `xml:"x>field"`
	} `xml:"command"`
}

func (a adhocAnswer) field(name string) string {
	for _, f := range a.Command.Fields {
		if f.Var == name {
			return f.Value
		}
	}
	return ""
}

// TestConventionsWakeDevice: for each registration convention (wakepush HTTP API, the
// p2/Conversations ad-hoc command through Prosody, Monal's token node with pushModule) a client
// enables push at a real Prosody and goes offline, another user sends a plain message, an
// OMEMO-shaped message and a Jingle call proposal, and the APNs mock wakes that device token:
// at least once after the last message (coalescing: a leading and a trailing wake), never more
// often than messages were sent.
func TestConventionsWakeDevice(t *testing.T) {
	srv := prosody.Start(t, prosody.Options{})
	for _, u := range []string{"bob", "alice", "carol", "dave"} {
		srv.CreateUser(u, u+"-pw")
	}
	// startStack's ingest environment is fixed; its processes inherit the test's environment,
	// and only ingest reads these.
	t.Setenv("WAKEPUSH_ADHOC_APPS", "apns="+appID)
	t.Setenv("WAKEPUSH_PUSH_MODULES", "monalProdiOS="+appID+":"+srv.Domain)
	s := startStack(t, &component{Addr: srv.ComponentAddr, JID: srv.ComponentJID, Secret: srv.ComponentSecret})
	srv.WaitLog("External component successfully authenticated", 20*time.Second)
	bob := srv.Login(t, "bob", "bob-pw")

	conventions := []struct {
		name, user string
		// enable registers token by the convention and enables push for the logged-in client;
		// it returns the device id.
		enable func(c *prosody.Client, token string) string
	}{
		{"HTTP API", "alice", func(c *prosody.Client, token string) string {
			reg := s.register(token)
			c.EnablePush(reg.JID, reg.Node, reg.Secret)
			return reg.DeviceID
		}},
		{"ad-hoc register-push-apns", "carol", func(c *prosody.Client, token string) string {
			var ans adhocAnswer
			c.IQTo("set", srv.ComponentJID, `<command xmlns='http://jabber.org/protocol/commands' node='register-push-apns' action='execute'>`+
				`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>https://p2.siacs.eu/push</value></field>`+
				`<field var='token'><value>`+token+`</value></field><field var='device-id'><value>5c0ffee5</value></field></x></command>`, &ans)
			if ans.Type != "result" || ans.Command.Status != "completed" || ans.field("jid") != srv.ComponentJID || ans.field("node") == "" {
				t.Fatalf("register-push-apns answered %+v", ans)
			}
			c.EnablePush(ans.field("jid"), ans.field("node"), ans.field("secret"))
			// The node is v2.<kid>.<device_id>.<registration_id>.<app>.
			return strings.Split(ans.field("node"), ".")[2]
		}},
		{"Monal token node", "dave", func(c *prosody.Client, token string) string {
			c.EnablePushFields(srv.ComponentJID, strings.ToUpper(token), "pushModule", "monalProdiOS")
			// No node is handed out: the device id is the token's, with startStack's keys.
			keys, err := identity.FromEnv("device", base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)),
				"node", "e2e1:"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)))
			if err != nil {
				t.Fatal(err)
			}
			return keys.DeviceID(appID, "apns", token)
		}},
	}
	for _, conv := range conventions {
		token := deviceToken(t)
		c := srv.Login(t, conv.user, conv.user+"-pw")
		deviceID := conv.enable(c, token)
		c.Close() // offline: messages go to offline storage and mod_cloud_notify publishes

		to := srv.JID(conv.user)
		bob.Message(to, "plain message for "+conv.user)
		bob.MessageXML(to, omemoMessage)
		bob.MessageXML(to, proposeMessage)
		lastSent := time.Now()
		const messages = 3
		srv.WaitLogCount("Sending important push notification for "+to, messages, 20*time.Second)

		afterLast := func(ps []apnsmock.Push) bool {
			for _, p := range ps {
				if !p.ReceivedAt.Before(lastSent) {
					return true
				}
			}
			return false
		}
		deadline := time.Now().Add(20 * time.Second)
		for !afterLast(s.mock.PushesFor(token)) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d wake(s) for the device, none after the last message", conv.name, len(s.mock.PushesFor(token)))
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(3 * minInterval) // a late extra wake would show now
		pushes := s.mock.PushesFor(token)
		if len(pushes) > messages {
			t.Errorf("%s: %d wakes for %d messages", conv.name, len(pushes), messages)
		}
		t.Logf("%s: %d wake(s) for %d messages, the last %s after the last message was sent", conv.name, len(pushes), messages,
			pushes[len(pushes)-1].ReceivedAt.Sub(lastSent).Round(time.Millisecond))
		for _, p := range pushes {
			if strings.Contains(string(p.Payload), "OMEMO") || strings.Contains(string(p.Payload), "plain message") || strings.Contains(string(p.Payload), "bob") {
				t.Errorf("%s: push payload carries message content: %s", conv.name, p.Payload)
			}
		}
		// Every publish was accepted and recorded as important, and the shipped analyst query
		// finds no event that a wake did not cover.
		s.waitCount(messages, 20*time.Second, "SELECT count() FROM events FINAL WHERE device_id = ? AND source = 'XMPP_COMPONENT' AND important", deviceID)
		s.assertNoUncoveredEvents(deviceID)
	}
	if log := srv.Log(); strings.Contains(log, "Got error <") || strings.Contains(log, "Unhandled push error") {
		t.Errorf("Prosody got an error answer to a publish")
	}
}
