package component_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/testcert"
	"github.com/wakepush/wakepush/services/ingest/component"
)

// newFakeTLSServer is newFakeServer behind direct TLS with cfg.
func newFakeTLSServer(t *testing.T, cfg *tls.Config) *fakeServer {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, conns: make(chan *serverConn, 8), rejectCond: "not-authorized"}
	t.Cleanup(func() { ln.Close() })
	go s.accept()
	return s
}

// Over direct TLS the component connects when it trusts the server's certificate for the name
// it checks — the address's host, or ServerName — and answers IQs; otherwise it never gets to
// the XEP-0114 handshake, and neither does a plain client.
func TestTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	tests := []struct {
		name     string
		certHost string // the server certificate's only name
		tls      *tls.Config
		wantOK   bool
	}{
		{"trusted", "127.0.0.1", &tls.Config{RootCAs: ca.Pool()}, true},
		{"server name", "xmpp.test", &tls.Config{RootCAs: ca.Pool(), ServerName: "xmpp.test"}, true},
		{"server name not the address's", "xmpp.test", &tls.Config{RootCAs: ca.Pool()}, false},
		{"untrusted", "127.0.0.1", &tls.Config{}, false},
		{"plain client", "127.0.0.1", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeTLSServer(t, &tls.Config{Certificates: []tls.Certificate{ca.Server(t, tc.certHost).TLS}})
			c, _, _ := start(t, srv, component.Config{TLS: tc.tls}, nil)
			if !tc.wantOK {
				time.Sleep(300 * time.Millisecond) // several attempts (backoff 10–50 ms)
				if c.Connected() || srv.handshakeOK.Load() != 0 {
					t.Fatal("connected")
				}
				return
			}
			sc := srv.next()
			waitConnected(t, c)
			sc.send(`<iq type='get' id='p1' from='example.com' to='push.example.org'><ping xmlns='urn:xmpp:ping'/></iq>`)
			if el := sc.mustRead(); el.AttrValue("type") != "result" || el.AttrValue("id") != "p1" {
				t.Fatalf("ping answer %s %+v", el.Name.Local, el.Attr)
			}
		})
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A plain connection to a host that is not loopback is logged as a warning at start.
func TestPlaintextWarning(t *testing.T) {
	tests := []struct {
		addr     string
		tls      bool
		wantWarn bool
	}{
		{"127.0.0.1:1", false, false},
		{"[::1]:1", false, false},
		{"localhost:1", false, false},
		{"192.0.2.1:5347", false, true}, // TEST-NET-1: never answers
		{"xmpp.example.org:5347", false, true},
		{"192.0.2.1:5347", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			var logs logBuffer
			cfg := component.Config{Addr: tc.addr, JID: jid, Secret: secret, DialTimeout: 50 * time.Millisecond,
				BackoffMin: time.Second, BackoffMax: time.Second, Log: slog.New(slog.NewTextHandler(&logs, nil))}
			if tc.tls {
				cfg.TLS = &tls.Config{}
			}
			c, err := component.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			c.Run(ctx)
			if got := strings.Contains(logs.String(), "plain TCP to a host that is not loopback"); got != tc.wantWarn {
				t.Fatalf("warned %v, want %v; log:\n%s", got, tc.wantWarn, logs.String())
			}
		})
	}
}
