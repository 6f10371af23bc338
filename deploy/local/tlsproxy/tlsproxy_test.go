package tlsproxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/testcert"
	"github.com/wakepush/wakepush/deploy/local/tlsproxy"
)

// echo serves a line-echo backend and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// A client that trusts the CA (and presents a certificate where one is required) talks to the
// backend through the proxy; any other client is refused during the handshake.
func TestProxy(t *testing.T) {
	ca := testcert.NewCA(t)
	srv := ca.Server(t, "127.0.0.1")
	client := ca.Client(t, "client")
	backend := echo(t)
	plain, err := tlsproxy.Start("127.0.0.1:0", backend, &tls.Config{Certificates: []tls.Certificate{srv.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	mutual, err := tlsproxy.Start("127.0.0.1:0", backend, &tls.Config{Certificates: []tls.Certificate{srv.TLS},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer mutual.Close()

	tests := []struct {
		name   string
		addr   string
		cfg    *tls.Config
		wantOK bool
	}{
		{"trusted", plain.Addr(), &tls.Config{RootCAs: ca.Pool()}, true},
		{"untrusted", plain.Addr(), &tls.Config{}, false},
		{"mutual with certificate", mutual.Addr(), &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}}, true},
		{"mutual without certificate", mutual.Addr(), &tls.Config{RootCAs: ca.Pool()}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tc.addr, tc.cfg)
			if err != nil {
				if tc.wantOK {
					t.Fatal(err)
				}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			// TLS 1.3 reports a refused client certificate on the first read.
			_, err = io.WriteString(c, "ping\n")
			var line string
			if err == nil {
				line, err = bufio.NewReader(c).ReadString('\n')
			}
			if ok := err == nil && strings.TrimSpace(line) == "ping"; ok != tc.wantOK {
				t.Fatalf("echo %q, %v; want ok=%v", line, err, tc.wantOK)
			}
		})
	}
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", plain.Addr(), time.Second); err == nil {
		t.Fatal("proxy still listening after Close")
	}
}

func TestNoCertificate(t *testing.T) {
	if _, err := tlsproxy.Start("127.0.0.1:0", "127.0.0.1:1", &tls.Config{}); err == nil {
		t.Fatal("started without a certificate")
	}
}
