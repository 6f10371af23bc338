package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/internal/fakexmpp"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

// Recognisable private values: none may appear in any log line of ingest.
const (
	privLocalpart = "SECRETLOCALPART"
	privResource  = "SECRETRESOURCE"
	privBody      = "SECRETBODY"
	privToken     = "deadbeef5ec4e7" + "00000000000000000000000000000000000000000000000000" // APNs token, 64 hex
	privBadSecret = "SECRETNODESECRET"
	privBearer    = "SECRETBEARER0123456789"
	privEventTok  = "SECRETEVENTTOKEN0123"
	privCompOK    = "SECRETCOMPONENTOK"
	privCompBad   = "SECRETCOMPONENTWRONG"
)

// TestLogsCarryNoPrivateData runs the ingest binary at DEBUG against kfake and two fake XMPP
// servers (one refusing its component secret), drives the error paths of the XEP-0357
// component, the ad-hoc commands and the HTTP API with recognisable JIDs, tokens, secrets and
// message content, then takes Kafka away so produce failures and undeliverable answers are
// logged too, and checks that no log line carries any of those values.
func TestLogsCarryNoPrivateData(t *testing.T) {
	kcfg, broker := testenv.KafkaBroker(t)
	good, err := fakexmpp.Listen(privCompOK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { good.Close() })
	wrong, err := fakexmpp.Listen("the-secret-the-server-expects")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wrong.Close() })
	const jid, jid2 = "push.example.org", "push2.example.org"
	p, httpAddr, _ := startIngestAdmin(t, kcfg, nil,
		"WAKEPUSH_LOG_LEVEL=debug", "WAKEPUSH_LOG_FORMAT=json",
		"WAKEPUSH_COMPONENTS="+jid+"@"+good.Addr()+","+jid2+"@"+wrong.Addr(),
		"WAKEPUSH_COMPONENT_SECRETS="+jid+"="+privCompOK+","+jid2+"="+privCompBad,
		"WAKEPUSH_COMPONENT_BACKOFF_MAX=1s",
		"WAKEPUSH_ADHOC_APPS=apns="+testenv.IOSApp,
		"WAKEPUSH_INGEST_EVENT_TOKENS=acme:"+privEventTok,
		"WAKEPUSH_INGEST_PRODUCE_TIMEOUT=1s")
	conn, err := good.Accept(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p.WaitLine("component handshake rejected", 15*time.Second) // the wrong secret
	api := "http://" + httpAddr

	// A real registration, for the wrong-secret and Kafka-down paths.
	status, reg := postJSON(t, api+"/v1/registrations", map[string]string{"app": testenv.IOSApp, "token": privToken})
	if status != 200 {
		t.Fatalf("register: %d %v", status, reg)
	}
	node, secret := reg["node"].(string), reg["secret"].(string)

	// HTTP API 4xx with the token, secrets and bearer tokens in paths, bodies and headers.
	for _, r := range []struct {
		method, path, auth, body string
	}{
		{"POST", "/v1/registrations", "", `{"app":"no.such.app","token":"` + privToken + `"}`},
		{"POST", "/v1/registrations", "", `{"app":"` + testenv.IOSApp + `","token":"` + privToken + `"`}, // truncated JSON
		{"POST", "/v1/registrations", "", `{"app":"` + testenv.IOSApp + `","token":"` + privToken + `","muc":"` + privLocalpart + `@conference.example.org"}`},
		{"GET", "/v1/registrations/" + privToken, "", ""},
		{"POST", "/v1/devices/" + privToken + "?token=" + privToken, "", ""},
		{"POST", "/v1/registrations/unregister", "", `{"node":"` + node + `","secret":"` + privBadSecret + `"}`},
		{"POST", "/v1/events", "Bearer " + privBearer, `{"node":"` + node + `","secret":"` + secret + `"}`},
		{"POST", "/v1/events", "Bearer " + privEventTok, `{"node":"` + node + `","secret":"` + privBadSecret + `","body":"` + privBody + `"}`},
		{"POST", "/v1/events", "Bearer " + privEventTok, `{"node":"nosuchnode` + privResource + `","secret":"` + privBadSecret + `"}`},
		{"POST", "/v1/receipts", "", `{"wake_id":"` + privToken + `","token":"` + privToken + `"}`},
	} {
		req, _ := http.NewRequest(r.method, api+r.path, strings.NewReader(r.body))
		req.Header.Set("Content-Type", "application/json")
		if r.auth != "" {
			req.Header.Set("Authorization", r.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s %s: %d, want a 4xx", r.method, r.path, resp.StatusCode)
		}
	}

	// XMPP: malformed publishes, an unknown node, a wrong secret, content in the summary,
	// ad-hoc commands from a user's full JID, odd IQs.
	full := privLocalpart + "@example.org/" + privResource
	publish := func(from, node, secret string) string {
		return strings.NewReplacer("romeo@montague.lit/orchard", full, "New Message!", privBody).Replace(
			fakexmpp.Publish("ID", from, jid, node, secret))
	}
	command := func(from, cmdNode, fields string) string {
		return `<iq type='set' id='ID' from='` + from + `' to='` + jid + `'><command xmlns='http://jabber.org/protocol/commands' node='` + cmdNode +
			`' action='execute'><x xmlns='jabber:x:data' type='submit'>` + fields + `</x></command></iq>`
	}
	field := func(name, value string) string {
		return `<field var='` + name + `'><value>` + value + `</value></field>`
	}
	stanzas := []struct{ name, xml, wantType string }{
		{"publish with content", publish("example.org", node, secret), "result"},
		{"wrong secret", publish("example.org", node, privBadSecret), "error"},
		{"unknown node", publish("example.org", "nosuchnode"+privResource, privBadSecret), "error"},
		{"publish from a full JID", publish(full, node, privBadSecret), "error"},
		{"malformed publish", `<iq type='set' id='ID' from='` + full + `' to='` + jid + `'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node=''><item>` +
			privBody + `</item></publish></pubsub></iq>`, "error"},
		{"ad-hoc register", command(full, "register-push-apns", field("token", privToken)), "result"},
		{"ad-hoc bad token", command(full, "register-push-apns", field("token", privLocalpart+privToken+"zz")), "error"},
		{"ad-hoc unknown command", command(full, "no-such-command-"+privResource, ""), "error"},
		{"ad-hoc unregister", command(full, "unregister-push-apns", field("token", privToken)), "result"},
		{"unsupported IQ", `<iq type='get' id='ID' from='` + full + `' to='` + jid + `'><query xmlns='urn:example:` + privResource + `'/></iq>`, "error"},
		{"bad IQ type", `<iq type='` + privResource + `' id='ID' from='` + full + `' to='` + jid + `'><ping xmlns='urn:xmpp:ping'/></iq>`, "error"},
	}
	for _, s := range stanzas {
		id := conn.NextID()
		ch, err := conn.Send(id, strings.ReplaceAll(s.xml, "'ID'", "'"+id+"'"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-ch:
			if a.Type != s.wantType {
				t.Errorf("%s: answered %s (%s), want %s", s.name, a.Type, a.Condition, s.wantType)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", s.name)
		}
	}

	// An IQ without from cannot be answered: logged at DEBUG only.
	if _, err := conn.Send("nofrom", `<iq type='get' id='nofrom' to='`+jid+`'><query xmlns='urn:example:`+privResource+`'/></iq>`); err != nil {
		t.Fatal(err)
	}
	p.WaitLine("dropping IQ without from", 10*time.Second)

	// Kafka gone: produce failures, then answers that cannot be delivered because the server
	// closed the stream meanwhile.
	broker.Close()
	id := conn.NextID()
	ch, err := conn.Send(id, strings.ReplaceAll(publish("example.org", node, secret), "'ID'", "'"+id+"'"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-ch:
		if a.Type != "error" || a.ErrorType != "wait" {
			t.Errorf("publish with Kafka down: %+v, want a wait error", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish with Kafka down: no answer")
	}
	p.WaitLine("kafka produce failed", 10*time.Second)
	id = conn.NextID()
	if _, err := conn.Send(id, strings.ReplaceAll(command(full, "register-push-apns", field("token", privToken)), "'ID'", "'"+id+"'")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the command is in flight, waiting for Kafka
	conn.Close()
	p.WaitLine("could not answer IQ", 10*time.Second)

	logs := p.Lines()
	var all bytes.Buffer
	for _, l := range logs {
		all.WriteString(l + "\n")
	}
	for _, want := range []string{"component handshake rejected", "kafka produce failed", "could not answer IQ", `"level":"DEBUG"`} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("no %q in the log: the path was not driven", want)
		}
	}
	for _, priv := range []string{privLocalpart, privResource, privBody, "5ec4e7", privBadSecret, privBearer, privEventTok, privCompOK, privCompBad, secret} {
		for _, l := range logs {
			if strings.Contains(l, priv) {
				t.Errorf("log line carries %q: %s", priv, l)
			}
		}
	}
	// The answer that could not be delivered names the sender's domain, not the user.
	if line := p.WaitLine("could not answer IQ", time.Second); !strings.Contains(line, `"from_domain":"example.org"`) {
		t.Errorf("undeliverable answer line: %s", line)
	}
	for _, l := range logs {
		if strings.HasPrefix(l, "{") && !json.Valid([]byte(l)) {
			t.Errorf("not a JSON log line: %s", l)
		}
	}
}
