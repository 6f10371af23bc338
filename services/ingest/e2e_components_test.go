package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/internal/fakexmpp"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/config"
)

// TestParseComponents: the WAKEPUSH_COMPONENTS and WAKEPUSH_COMPONENT_SECRETS syntax.
func TestParseComponents(t *testing.T) {
	got, err := parseComponents(" Push.A.example@xmpp-a:5347, push.b.example@[::1]:5347*3 ,")
	if err != nil {
		t.Fatal(err)
	}
	want := []componentEntry{{JID: "push.a.example", Addr: "xmpp-a:5347", Count: 1}, {JID: "push.b.example", Addr: "[::1]:5347", Count: 3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
	got, err = parseComponents("push.a.example@xmpp-a:5223*2;tls;ca=/etc/ca.pem;server-name=xmpp.example, push.b.example@xmpp-b:5223;tls, push.c.example@xmpp-c:5347;tls=false")
	if err != nil {
		t.Fatal(err)
	}
	want = []componentEntry{
		{JID: "push.a.example", Addr: "xmpp-a:5223", Count: 2, TLS: componentTLS{Enabled: true, CAFile: "/etc/ca.pem", ServerName: "xmpp.example"}},
		{JID: "push.b.example", Addr: "xmpp-b:5223", Count: 1, TLS: componentTLS{Enabled: true}},
		{JID: "push.c.example", Addr: "xmpp-c:5347", Count: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
	for _, bad := range []string{"xmpp-a:5347", "push.a@xmpp-a", "push.a@h:1*0", "push.a@h:1*65", "push.a@h:1*x",
		"push.a@h:1,push.a@h:1", "a/b@h:1", "@h:1", "push.a@h:1;ca=/ca.pem", "push.a@h:1;server-name=x", "push.a@h:1;tls;ca=",
		"push.a@h:1;tls=maybe", "push.a@h:1;starttls", "push.a@h:1;tls,push.a@h:1"} {
		if _, err := parseComponents(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	secrets, err := parseComponentSecrets("push.a.example=s3cr=t, PUSH.B.example=other")
	if err != nil || secrets["push.a.example"] != "s3cr=t" || secrets["push.b.example"] != "other" {
		t.Fatalf("secrets %v %v", secrets, err)
	}
	for _, bad := range []string{"push.a.example", "=x", "a=", "a=x,a=y"} {
		_, err := parseComponentSecrets(bad + "-hidden")
		if err == nil && bad != "a=" {
			t.Errorf("%q accepted", bad)
		}
		if err != nil && strings.Contains(err.Error(), "hidden") {
			t.Errorf("error leaks a secret: %v", err)
		}
	}
}

// TestConfigComponents: the list, per-JID secrets with the single secret as fallback, N
// connections per server, the old single-connection variables as a shorthand, and the errors.
func TestConfigComponents(t *testing.T) {
	t.Setenv("WAKEPUSH_APPS_FILE", testenv.AppsFile(t))
	t.Setenv("WAKEPUSH_NODE_KEYS", testenv.NodeKeys)
	t.Setenv("WAKEPUSH_DEVICE_ID_KEY", testenv.DeviceIDKey)
	load := func(env map[string]string) (settings, loaded, error) {
		for _, k := range []string{"WAKEPUSH_COMPONENTS", "WAKEPUSH_COMPONENT_SECRETS", "WAKEPUSH_COMPONENT_SECRET",
			"WAKEPUSH_COMPONENT_ADDR", "WAKEPUSH_COMPONENT_JID", "WAKEPUSH_COMPONENT_READINESS"} {
			t.Setenv(k, env[k])
		}
		var c settings
		if err := newSet(&c).Parse(nil); err != nil {
			t.Fatal(err)
		}
		var chk config.Check
		l := c.load(&chk)
		return c, l, chk.Err()
	}
	c, l, err := load(map[string]string{
		"WAKEPUSH_COMPONENTS":          "push.a.example@127.0.0.1:5347,push.b.example@127.0.0.2:5347*3",
		"WAKEPUSH_COMPONENT_SECRETS":   "push.b.example=secret-b",
		"WAKEPUSH_COMPONENT_SECRET":    "secret-default",
		"WAKEPUSH_COMPONENT_READINESS": "all",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cc := range l.Components {
		got = append(got, fmt.Sprintf("%s@%s#%d:%s", cc.JID, cc.Addr, cc.Connection, cc.Secret))
	}
	want := "push.a.example@127.0.0.1:5347#1:secret-default push.b.example@127.0.0.2:5347#1:secret-b " +
		"push.b.example@127.0.0.2:5347#2:secret-b push.b.example@127.0.0.2:5347#3:secret-b"
	if strings.Join(got, " ") != want {
		t.Fatalf("components\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if c.ComponentJID != "push.a.example" {
		t.Errorf("registrations hand out %q, want the first component's JID", c.ComponentJID)
	}

	// The single-connection shorthand.
	c, l, err = load(map[string]string{"WAKEPUSH_COMPONENT_ADDR": "127.0.0.1:5347", "WAKEPUSH_COMPONENT_JID": "Push.Example.org",
		"WAKEPUSH_COMPONENT_SECRET": "s"})
	if err != nil || len(l.Components) != 1 || l.Components[0].JID != "push.example.org" || l.Components[0].Secret != "s" ||
		l.Components[0].Connection != 1 || c.ComponentJID != "Push.Example.org" {
		t.Fatalf("shorthand: %+v %v", l.Components, err)
	}

	_, _, err = load(map[string]string{
		"WAKEPUSH_COMPONENTS":          "push.a.example@127.0.0.1:5347,push.b.example@127.0.0.2:5347",
		"WAKEPUSH_COMPONENT_SECRETS":   "push.a.example=hidden-a,push.c.example=hidden-c",
		"WAKEPUSH_COMPONENT_READINESS": "some",
	})
	for _, want := range []string{"no secret for component push.b.example", "names push.c.example, which is not in WAKEPUSH_COMPONENTS",
		"WAKEPUSH_COMPONENT_READINESS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hidden") {
		t.Errorf("error leaks a secret: %v", err)
	}
	if _, _, err := load(map[string]string{"WAKEPUSH_COMPONENTS": "push.a.example@127.0.0.1:5347", "WAKEPUSH_COMPONENT_ADDR": "127.0.0.1:5347",
		"WAKEPUSH_COMPONENT_JID": "push.a.example", "WAKEPUSH_COMPONENT_SECRET": "s"}); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both forms accepted: %v", err)
	}
}

// TestSeveralComponentConnections runs the binary against two XMPP servers (fakexmpp), with two
// connections to the first (ejabberd-style balancing) and one to the second, each with its own
// JID and secret: publishes on every connection are accepted and in Kafka, /readyz (all)
// follows the connections, metrics carry one series per connection, and a connection that
// breaks reconnects on its own while the others keep serving.
func TestSeveralComponentConnections(t *testing.T) {
	kcfg := testenv.Kafka(t)
	fxA, err := fakexmpp.Listen("secret-a")
	if err != nil {
		t.Fatal(err)
	}
	defer fxA.Close()
	fxB, err := fakexmpp.Listen("secret-b")
	if err != nil {
		t.Fatal(err)
	}
	defer fxB.Close()
	_, _, adminAddr := startIngestAdmin(t, kcfg, nil,
		"WAKEPUSH_COMPONENTS=push.a.example@"+fxA.Addr()+"*2,push.b.example@"+fxB.Addr(),
		"WAKEPUSH_COMPONENT_SECRETS=push.a.example=secret-a,push.b.example=secret-b",
		"WAKEPUSH_COMPONENT_READINESS=all")
	var conns []*fakexmpp.Conn
	for _, fx := range []*fakexmpp.Server{fxA, fxA, fxB} {
		c, err := fx.Accept(15 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	keys := testenv.Keys(t)
	publish := func(c *fakexmpp.Conn, to string, n int) string {
		t.Helper()
		reg := keys.Register(testenv.IOSApp, "apns", fmt.Sprintf("%064x", n))
		id := c.NextID()
		ch, err := c.Send(id, fakexmpp.Publish(id, "example.com", to, reg.Node, reg.Secret))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-ch:
			if a.Type != "result" {
				t.Fatalf("publish %d to %s answered %+v", n, to, a)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("publish %d to %s: no answer", n, to)
		}
		return reg.DeviceID
	}
	var devices []string
	for i, c := range conns {
		to := "push.a.example"
		if i == 2 {
			to = "push.b.example"
		}
		devices = append(devices, publish(c, to, 100+i))
	}
	for _, d := range devices {
		if n := len(eventsOf(t, kcfg, d, 10*time.Second)); n != 1 {
			t.Fatalf("%d events for device %s, want 1", n, d)
		}
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + adminAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz with every connection up: %d %s", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`component_jid="push.a.example",connection="2"`, `component_jid="push.b.example",connection="1"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks a series with %s", want)
		}
	}

	// Server B drops its connection: /readyz (all) names it, A's connections keep serving,
	// and B's connection comes back by itself.
	conns[2].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		if code == 503 && strings.Contains(body, "push.b.example@"+fxB.Addr()+"#1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz while B is down: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	publish(conns[0], "push.a.example", 200)
	publish(conns[1], "push.a.example", 201)
	back, err := fxB.Accept(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := publish(back, "push.b.example", 202); len(eventsOf(t, kcfg, d, 10*time.Second)) != 1 {
		t.Fatal("no event for the publish on the reconnected connection")
	}
}
