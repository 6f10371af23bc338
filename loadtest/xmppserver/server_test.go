package xmppserver

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// component is a minimal XEP-0114 component (the ingest side) answering every IQ set with
// answer(iq) (or not at all when it returns ""). With a nil answer nothing reads the connection
// after the handshake: the caller does (two readers would race for the server's answer).
func component(t *testing.T, addr, jid, secret string, answer func(id, raw string) string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	io.WriteString(nc, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='"+jid+"'>")
	dec := xml.NewDecoder(nc)
	st, err := nextStart(dec)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum([]byte(attr(st, "id") + secret))
	io.WriteString(nc, "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>")
	if answer == nil {
		return nc // the caller reads the rest itself
	}
	go func() {
		for {
			st, err := nextStart(dec)
			if err != nil {
				return
			}
			if st.Name.Local != "iq" {
				continue
			}
			var raw struct {
				Inner string `xml:",innerxml"`
			}
			dec.DecodeElement(&raw, &st)
			if a := answer(attr(st, "id"), raw.Inner); a != "" {
				io.WriteString(nc, a)
			}
		}
	}()
	return nc
}

func TestPublishRoundTrip(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "push1.lt", "s3cret", "xmpp1.lt")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	var seen []string
	component(t, s.Addr(), "push1.lt", "s3cret", func(id, raw string) string {
		mu.Lock()
		seen = append(seen, raw)
		mu.Unlock()
		if strings.Contains(raw, "node='bad'") {
			return "<iq type='error' id='" + id + "'><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>wrong</text></error></iq>"
		}
		return "<iq type='result' id='" + id + "'/>"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got := make(chan Answer, 2)
	if err := s.Publish("romeo@xmpp1.lt", "v1.k.node", "sec", true, func(a Answer) { got <- a }); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish("romeo@xmpp1.lt", "bad", "sec", false, func(a Answer) { got <- a }); err != nil {
		t.Fatal(err)
	}
	var ok, bad int
	for range 2 {
		select {
		case a := <-got:
			if a.OK() {
				ok++
			} else if a.Type == "error" && a.ErrorType == "auth" && a.Condition == "not-authorized" {
				bad++
			} else {
				t.Errorf("unexpected answer %+v", a)
			}
		case <-ctx.Done():
			t.Fatal("no answer")
		}
	}
	if ok != 1 || bad != 1 {
		t.Fatalf("ok %d bad %d", ok, bad)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(seen[0], "var='urgent'") || !strings.Contains(seen[0], "<value>sec</value>") ||
		!strings.Contains(seen[0], "urn:xmpp:push:summary") || strings.Contains(seen[1], "var='urgent'") {
		t.Errorf("publish shape wrong: %q", seen)
	}
}

func TestBadHandshakeRejected(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "push1.lt", "right", "xmpp1.lt")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc := component(t, s.Addr(), "push1.lt", "wrong", nil)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(nc)
	if !strings.Contains(string(b), "not-authorized") {
		t.Fatalf("got %q", b)
	}
	if s.Connected() != 0 || s.Rejected.Load() != 1 {
		t.Fatalf("connected %d rejected %d", s.Connected(), s.Rejected.Load())
	}
	if err := s.Publish("a@b", "n", "s", false, func(Answer) {}); err != ErrNotConnected {
		t.Fatalf("publish without component: %v", err)
	}
}

func TestConnectionLossFailsPending(t *testing.T) {
	s, err := Listen("127.0.0.1:0", "push1.lt", "x", "xmpp1.lt")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nc := component(t, s.Addr(), "push1.lt", "x", func(string, string) string { return "" })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got := make(chan Answer, 1)
	if err := s.Publish("a@xmpp1.lt", "n", "s", false, func(a Answer) { got <- a }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	nc.Close()
	select {
	case a := <-got:
		if a.Err == nil || a.OK() {
			t.Fatalf("want a connection error, got %+v", a)
		}
	case <-ctx.Done():
		t.Fatal("pending publish never failed")
	}
}
