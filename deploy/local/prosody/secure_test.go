package prosody_test

import (
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/deploy/local/testcert"
)

// TestComponentTLS: with ComponentTLS, Prosody authenticates a component over direct TLS on
// SecureComponentAddr with the given certificate, and the plain component port still works.
func TestComponentTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	cert := ca.Server(t, "127.0.0.1", "localhost")
	srv := prosody.Start(t, prosody.Options{ComponentTLS: &prosody.CertFiles{CertFile: cert.CertFile, KeyFile: cert.KeyFile}})
	if srv.SecureComponentAddr == "" {
		t.Fatal("no SecureComponentAddr")
	}

	// A client that does not trust the CA fails the handshake.
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.SecureComponentAddr, &tls.Config{}); err == nil {
		c.Close()
		t.Fatal("TLS handshake without the CA succeeded")
	}

	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.SecureComponentAddr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "127.0.0.1" {
		t.Fatalf("Prosody presents %q, not the configured certificate", got)
	}
	handshake(t, c, srv)
	srv.WaitLog("External component successfully authenticated", 5*time.Second)
}

// handshake authenticates as srv's component over c (XEP-0114 §3).
func handshake(t *testing.T, c net.Conn, srv *prosody.Server) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='"+srv.ComponentJID+"'>")
	header := readUntil(t, c, ">")
	m := regexp.MustCompile(`id=['"]([^'"]+)['"]`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("no stream id in %q", header)
	}
	sum := sha1.Sum([]byte(m[1] + srv.ComponentSecret))
	io.WriteString(c, "<handshake>"+hex.EncodeToString(sum[:])+"</handshake>")
	if got := readUntil(t, c, "handshake"); !strings.Contains(got, "<handshake") {
		t.Fatalf("handshake answer %q", got)
	}
}
