package component_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wakepush/wakepush/services/ingest/component"
	"github.com/wakepush/wakepush/services/ingest/xmpp"
)

const (
	jid    = "push.example.org"
	secret = "component-secret"
)

// fakeServer is the server side of XEP-0114, driven by the test.
type fakeServer struct {
	t     *testing.T
	ln    net.Listener
	conns chan *serverConn
	// reject makes the next n handshakes fail with this stream error condition.
	reject      atomic.Int32
	rejectCond  string
	handshakeOK atomic.Int32
}

type serverConn struct {
	t  *testing.T
	nc net.Conn
	sr *xmpp.StreamReader
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, conns: make(chan *serverConn, 8), rejectCond: "not-authorized"}
	t.Cleanup(func() { ln.Close() })
	go s.accept()
	return s
}

func (s *fakeServer) accept() {
	n := 0
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		n++
		go s.handshake(nc, fmt.Sprintf("stream-%d", n))
	}
}

func (s *fakeServer) handshake(nc net.Conn, id string) {
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	sr := xmpp.NewStreamReader(nc, 1<<20)
	h, err := sr.Header()
	if err != nil {
		nc.Close()
		return
	}
	to := ""
	for _, a := range h.Attr {
		if a.Name.Local == "to" {
			to = a.Value
		}
	}
	io.WriteString(nc, "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='"+id+"' from='"+to+"'>")
	el, err := sr.Next()
	if err != nil || el.Name.Local != "handshake" {
		nc.Close()
		return
	}
	if s.reject.Load() > 0 {
		s.reject.Add(-1)
		io.WriteString(nc, "<stream:error><"+s.rejectCond+" xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
		nc.Close()
		return
	}
	sum := sha1.Sum([]byte(id + secret))
	if el.TrimmedText() != hex.EncodeToString(sum[:]) || to != jid {
		io.WriteString(nc, "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
		nc.Close()
		return
	}
	io.WriteString(nc, "<handshake/>")
	nc.SetDeadline(time.Time{})
	s.handshakeOK.Add(1)
	s.conns <- &serverConn{t: s.t, nc: nc, sr: sr}
}

func (s *fakeServer) next() *serverConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		s.t.Cleanup(func() { c.nc.Close() })
		return c
	case <-time.After(10 * time.Second):
		s.t.Fatal("the component did not connect")
		return nil
	}
}

func (c *serverConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next element the component sent (or nil and the error).
func (c *serverConn) read(timeout time.Duration) (*xmpp.Element, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return c.sr.Next()
}

func (c *serverConn) mustRead() *xmpp.Element {
	c.t.Helper()
	el, err := c.read(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read from component: %v", err)
	}
	return el
}

// start runs a component against srv; done is closed when Run returns.
func start(t *testing.T, srv *fakeServer, cfg component.Config, setup func(*component.Component)) (*component.Component, context.CancelFunc, chan struct{}) {
	t.Helper()
	cfg.Addr = srv.ln.Addr().String()
	cfg.JID = jid
	cfg.Secret = secret
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	}
	c, err := component.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return c, cancel, done
}

func waitConnected(t *testing.T, c *component.Component) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !c.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("not connected after the handshake")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func iqErr(el *xmpp.Element) (typ, cond string) {
	e := el.Child("", "error")
	if e == nil {
		return "", ""
	}
	se := xmpp.ReadStanzaError(e, xmpp.NSStanzas)
	return se.Type, se.Condition
}

func TestIQs(t *testing.T) {
	srv := newFakeServer(t)
	c, _, _ := start(t, srv, component.Config{}, func(c *component.Component) {
		c.Handle("set", xmpp.NSPubSub, "pubsub", "publish", true, func(ctx context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
			switch iq.Payload.Child("", "publish").AttrValue("node") {
			case "ok":
				return "", nil
			case "gone":
				return "", xmpp.NewError(xmpp.ErrorCancel, xmpp.ItemNotFound, "unregistered")
			case "panic":
				panic("handler bug")
			}
			return "", xmpp.NewError(xmpp.ErrorModify, xmpp.BadRequest, "")
		})
	})
	sc := srv.next()
	waitConnected(t, c)
	tests := []struct {
		name, stanza    string
		wantType        string // result or error
		errType, errCnd string
		check           func(*testing.T, *xmpp.Element)
	}{
		{name: "disco#info", stanza: `<iq type='get' id='d1' from='user@example.com/res' to='push.example.org'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			wantType: "result", check: func(t *testing.T, el *xmpp.Element) {
				q := el.Child(xmpp.NSDiscoInfo, "query")
				id := q.Child("", "identity")
				if id.AttrValue("category") != "pubsub" || id.AttrValue("type") != "push" {
					t.Fatalf("identity %+v", id)
				}
				var feats []string
				for _, f := range q.ChildrenNamed("", "feature") {
					feats = append(feats, f.AttrValue("var"))
				}
				for _, want := range []string{xmpp.NSPush, xmpp.NSDiscoInfo, xmpp.NSPing} {
					if !strings.Contains(strings.Join(feats, " "), want) {
						t.Fatalf("features %v lack %s", feats, want)
					}
				}
			}},
		{name: "disco#info node", stanza: `<iq type='get' id='d2' from='example.com' to='push.example.org'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>`,
			wantType: "error", errType: "cancel", errCnd: "item-not-found"},
		{name: "disco#items", stanza: `<iq type='get' id='d3' from='example.com' to='push.example.org'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`, wantType: "result"},
		{name: "ping", stanza: `<iq type='get' id='p1' from='example.com' to='push.example.org'><ping xmlns='urn:xmpp:ping'/></iq>`, wantType: "result"},
		{name: "unsupported", stanza: `<iq type='get' id='u1' from='example.com' to='push.example.org'><vCard xmlns='vcard-temp'/></iq>`,
			wantType: "error", errType: "cancel", errCnd: "service-unavailable"},
		{name: "no payload", stanza: `<iq type='set' id='m1' from='example.com' to='push.example.org'/>`,
			wantType: "error", errType: "modify", errCnd: "bad-request"},
		{name: "bad type", stanza: `<iq type='sett' id='m2' from='example.com' to='push.example.org'><ping xmlns='urn:xmpp:ping'/></iq>`,
			wantType: "error", errType: "modify", errCnd: "bad-request"},
		{name: "publish ok", stanza: `<iq type='set' id='x1' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='ok'/></pubsub></iq>`, wantType: "result"},
		{name: "publish gone", stanza: `<iq type='set' id='x2' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='gone'/></pubsub></iq>`,
			wantType: "error", errType: "cancel", errCnd: "item-not-found", check: func(t *testing.T, el *xmpp.Element) {
				if txt := el.Child("", "error").Child(xmpp.NSStanzas, "text").TrimmedText(); txt != "unregistered" {
					t.Fatalf("error text %q", txt)
				}
				if el.Child("", "pubsub") != nil {
					t.Fatal("error echoes the payload")
				}
			}},
		{name: "handler panic", stanza: `<iq type='set' id='x3' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='panic'/></pubsub></iq>`,
			wantType: "error", errType: "wait", errCnd: "internal-server-error"},
		{name: "publish with quotes in id", stanza: `<iq type='set' id="a'&lt;b" from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='ok'/></pubsub></iq>`, wantType: "result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := parse(t, tt.stanza)
			sc.send(tt.stanza)
			el := sc.mustRead()
			if el.Name.Local != "iq" || el.AttrValue("type") != tt.wantType || el.AttrValue("id") != in.AttrValue("id") ||
				el.AttrValue("to") != in.AttrValue("from") || el.AttrValue("from") != in.AttrValue("to") {
				t.Fatalf("answer %+v to %s", el, tt.stanza)
			}
			if tt.wantType == "error" {
				if typ, cond := iqErr(el); typ != tt.errType || cond != tt.errCnd {
					t.Fatalf("error %s/%s, want %s/%s", typ, cond, tt.errType, tt.errCnd)
				}
			}
			if tt.check != nil {
				tt.check(t, el)
			}
		})
	}

	// Stanzas that need no answer get none, and the stream goes on.
	sc.send(`<iq type='result' id='r1' from='example.com' to='push.example.org'/>` +
		`<iq type='error' id='r2' from='example.com' to='push.example.org'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>` +
		`<message from='a@example.com' to='push.example.org'><body>hi</body></message><presence from='a@example.com' to='push.example.org'/>` +
		`<iq type='get' id='nofrom' to='push.example.org'><ping xmlns='urn:xmpp:ping'/></iq>` +
		`<!-- a comment -->  ` +
		`<iq type='get' id='last' from='example.com' to='push.example.org'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if el := sc.mustRead(); el.AttrValue("id") != "last" {
		t.Fatalf("answered %q", el.AttrValue("id"))
	}
	if srv.handshakeOK.Load() != 1 {
		t.Fatal("the component reconnected")
	}
}

func parse(t *testing.T, stanza string) *xmpp.Element {
	sr := xmpp.NewStreamReader(strings.NewReader("<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:component:accept'>"+stanza), 1<<16)
	if _, err := sr.Header(); err != nil {
		t.Fatal(err)
	}
	el, err := sr.Next()
	if err != nil {
		t.Fatal(err)
	}
	return el
}

// TestStreamFailures: XML that is not well-formed and oversized stanzas end the stream with the
// matching stream error; the component reconnects.
func TestStreamFailures(t *testing.T) {
	srv := newFakeServer(t)
	start(t, srv, component.Config{MaxStanzaSize: 4096}, nil)
	for _, tc := range []struct{ send, cond string }{
		{"<iq type='get' id='1' from='a' to='b'><ping xmlns='urn:xmpp:ping'></iq>", "not-well-formed"},
		{"<iq type='get' id='2' from='a' to='b'><ping xmlns='urn:xmpp:ping'>" + strings.Repeat("x", 5000) + "</ping></iq>", "policy-violation"},
		{"<!DOCTYPE foo [<!ENTITY x 'y'>]>", "restricted-xml"},
	} {
		sc := srv.next()
		sc.send(tc.send)
		el := sc.mustRead()
		if el.Name.Local != "error" || el.Child(xmpp.NSStreams, tc.cond) == nil {
			t.Fatalf("after %.40q: got %+v, want stream error %s", tc.send, el, tc.cond)
		}
		if _, err := sc.read(5 * time.Second); err != xmpp.ErrStreamClosed {
			t.Fatalf("stream not closed after the error: %v", err)
		}
	}
	// The server closing the stream also leads to a reconnect.
	sc := srv.next()
	sc.send("<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
	sc.nc.Close()
	srv.next()
}

func TestRejectedHandshakeRetries(t *testing.T) {
	for _, cond := range []string{"not-authorized", "conflict", "host-unknown"} {
		t.Run(cond, func(t *testing.T) {
			srv := newFakeServer(t)
			srv.rejectCond = cond
			srv.reject.Store(2)
			c, _, _ := start(t, srv, component.Config{}, nil)
			srv.next()
			waitConnected(t, c)
			if srv.reject.Load() != 0 {
				t.Fatalf("connected with %d rejections left", srv.reject.Load())
			}
		})
	}
}

func TestOverloadAndDrain(t *testing.T) {
	srv := newFakeServer(t)
	release := make(chan struct{})
	started := make(chan string, 4)
	var overloaded atomic.Int32
	_, cancel, done := start(t, srv, component.Config{MaxInFlight: 1, Overloaded: func(context.Context, string) { overloaded.Add(1) }},
		func(c *component.Component) {
			c.Handle("set", xmpp.NSPubSub, "pubsub", "publish", true, func(ctx context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
				started <- iq.ID
				<-release
				return "", nil
			})
		})
	sc := srv.next()
	pub := func(id string) string {
		return `<iq type='set' id='` + id + `' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`
	}
	sc.send(pub("first"))
	<-started
	sc.send(pub("second"))
	el := sc.mustRead()
	if typ, cond := iqErr(el); el.AttrValue("id") != "second" || typ != "wait" || cond != "resource-constraint" {
		t.Fatalf("over the limit: %+v", el)
	}
	if overloaded.Load() != 1 {
		t.Fatal("overload not reported")
	}
	// Shut down with "first" in flight: it is answered before the stream closes.
	cancel()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Run returned with a publish in flight")
	default:
	}
	close(release)
	el = sc.mustRead()
	if el.AttrValue("id") != "first" || el.AttrValue("type") != "result" {
		t.Fatalf("in-flight answer %+v", el)
	}
	if _, err := sc.read(5 * time.Second); err != xmpp.ErrStreamClosed {
		t.Fatalf("after the drain: %v, want the stream closed", err)
	}
	sc.send("</stream:stream>")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

func TestKeepalive(t *testing.T) {
	srv := newFakeServer(t)
	start(t, srv, component.Config{KeepAlive: 100 * time.Millisecond}, nil)
	sc := srv.next()
	sc.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 16)
	n, err := sc.nc.Read(b)
	if err != nil || strings.TrimSpace(string(b[:n])) != "" {
		t.Fatalf("keepalive: %q, %v", b[:n], err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []component.Config{
		{JID: jid, Secret: secret},
		{Addr: "nohostport", JID: jid, Secret: secret},
		{Addr: "127.0.0.1:5347", JID: "user@push.example.org", Secret: secret},
		{Addr: "127.0.0.1:5347", JID: jid},
	} {
		if _, err := component.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// A publish over the in-flight limit waits for a slot (AdmissionWait) instead of being refused
// when one frees in time, and is refused once the wait passes without one.
func TestAdmissionWait(t *testing.T) {
	tests := []struct {
		name    string
		wait    time.Duration
		release bool // the first handler finishes while the second publish waits
		refused bool
	}{
		{"slot frees within the wait", time.Minute, true, false},
		{"no slot within the wait", 200 * time.Millisecond, false, true},
		{"no wait", -1, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			release := make(chan struct{})
			started := make(chan string, 4)
			var overloaded atomic.Int32
			_, cancel, _ := start(t, srv, component.Config{MaxInFlight: 1, AdmissionWait: tt.wait, Overloaded: func(context.Context, string) { overloaded.Add(1) }},
				func(c *component.Component) {
					c.Handle("set", xmpp.NSPubSub, "pubsub", "publish", true, func(ctx context.Context, iq xmpp.IQ) (string, *xmpp.StanzaError) {
						started <- iq.ID
						if iq.ID == "first" {
							<-release
						}
						return "", nil
					})
				})
			defer cancel()
			sc := srv.next()
			pub := func(id string) string {
				return `<iq type='set' id='` + id + `' from='example.com' to='push.example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/></pubsub></iq>`
			}
			sc.send(pub("first"))
			<-started
			sc.send(pub("second"))
			if tt.release {
				time.Sleep(50 * time.Millisecond) // the second is waiting for the slot (or refused)
				close(release)
			}
			answers := map[string]*xmpp.Element{}
			for len(answers) < 2 {
				el := sc.mustRead()
				answers[el.AttrValue("id")] = el
				if !tt.release && el.AttrValue("id") == "second" {
					close(release)
				}
			}
			typ, cond := iqErr(answers["second"])
			if got := typ == "wait" && cond == "resource-constraint"; got != tt.refused {
				t.Fatalf("second publish: %+v (refused %v, want %v)", answers["second"], got, tt.refused)
			}
			if !tt.refused && answers["second"].AttrValue("type") != "result" {
				t.Fatalf("second publish admitted but answered %+v", answers["second"])
			}
			if want := map[bool]int32{true: 1, false: 0}[tt.refused]; overloaded.Load() != want {
				t.Fatalf("overload reported %d times, want %d", overloaded.Load(), want)
			}
		})
	}
}
