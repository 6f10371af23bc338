package prosody_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
)

// TestStart starts a real Prosody, registers a user and authenticates a component with the
// XEP-0114 handshake over a raw connection.
func TestStart(t *testing.T) {
	srv := prosody.Start(t, prosody.Options{ComponentSecret: `se"cr\et`})
	if srv.Domain != "localhost" || srv.ComponentJID != "push.localhost" {
		t.Fatalf("defaults: %+v", srv)
	}
	srv.CreateUser("alice", "wonderland")
	srv.WaitLog("cloud_notify", 5*time.Second)

	c, err := net.DialTimeout("tcp", srv.ComponentAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	handshake(t, c, srv)
	srv.WaitLog("External component successfully authenticated", 5*time.Second)

	// The c2s port speaks XMPP.
	cc, err := net.DialTimeout("tcp", srv.C2SAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(cc, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
	if got := readUntil(t, cc, "PLAIN"); !strings.Contains(got, "<mechanism>PLAIN</mechanism>") {
		t.Fatalf("stream features %q do not offer PLAIN", got)
	}

	srv.Stop()
	select {
	case <-srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("prosody did not stop")
	}
}

func readUntil(t *testing.T, r io.Reader, substr string) string {
	t.Helper()
	var b strings.Builder
	buf := make([]byte, 1024)
	for !strings.Contains(b.String(), substr) {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, b.String())
		}
	}
	return b.String()
}
