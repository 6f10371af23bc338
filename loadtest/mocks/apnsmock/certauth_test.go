package apnsmock_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

// certClient is an apns2 certificate client on its own HTTP/2 connection.
func (f *fixture) certClient(cert tls.Certificate) *apns2.Client {
	c := apns2.NewClient(cert)
	c.Host = f.srv.URL()
	//lint:ignore SA1019 apns2 v0.25.0 builds its client on x/net's http2.Transport
	tr := c.HTTPClient.Transport.(*http2.Transport)
	tr.TLSClientConfig.RootCAs = f.srv.CertPool()
	f.t.Cleanup(c.CloseIdleConnections)
	return c
}

func (f *fixture) issue(ca *apnsmock.CA, o apnsmock.ClientCertOptions) tls.Certificate {
	f.t.Helper()
	cc, err := ca.IssueClientCert(o)
	if err != nil {
		f.t.Fatal(err)
	}
	return cc.TLS
}

func TestCertificateAuth(t *testing.T) {
	f := newFixture(t, apnsmock.Config{Environment: apnsmock.EnvProduction})
	f.srv.AddClientCA(f.srv.CA().Cert)
	const certTopic = "com.example.certapp" // not registered with AddTopic: the certificate names it
	cert := f.issue(f.srv.CA(), apnsmock.ClientCertOptions{Topic: certTopic, TeamID: "CERTTEAM01", Environment: apnsmock.EnvProduction})
	c := f.certClient(cert)

	push := func(c *apns2.Client, n *apns2.Notification) *apns2.Response {
		t.Helper()
		resp, err := c.Push(n)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tok := deviceToken()
	n := alertNotification(tok)
	n.Topic = certTopic
	if r := push(c, n); r.StatusCode != 200 {
		t.Fatalf("certificate push: %d %s", r.StatusCode, r.Reason)
	}
	got := f.srv.PushesFor(tok)
	if len(got) != 1 || got[0].Auth != "certificate" || got[0].TeamID != "CERTTEAM01" || got[0].KeyID != "" || got[0].Topic != certTopic {
		t.Fatalf("recorded %+v", got)
	}

	// No apns-topic: with a certificate the topic defaults to the certificate's.
	n = alertNotification(deviceToken())
	n.Topic = ""
	if r := push(c, n); r.StatusCode != 200 {
		t.Errorf("no topic: %d %s, want 200", r.StatusCode, r.Reason)
	}
	// The bundle's push-type variants are covered; other topics are not.
	n = alertNotification(deviceToken())
	n.Topic, n.PushType = certTopic+".voip", apns2.PushTypeVOIP
	if r := push(c, n); r.StatusCode != 200 {
		t.Errorf("voip topic: %d %s, want 200", r.StatusCode, r.Reason)
	}
	n = alertNotification(deviceToken())
	n.Topic = topic // registered with AddTopic, but not the certificate's
	if r := push(c, n); r.StatusCode != 400 || r.Reason != apnsmock.ReasonTopicDisallowed {
		t.Errorf("other topic: %d %s, want 400 TopicDisallowed", r.StatusCode, r.Reason)
	}

	// A bearer token on a certificate connection is ignored (Apple: "When the provider
	// certificate is used to establish a connection, this request header is ignored").
	c2 := f.certClient(cert)
	c2.Token = fixedToken("not.a.jwt")
	n = alertNotification(deviceToken())
	n.Topic = certTopic
	if r := push(c2, n); r.StatusCode != 200 {
		t.Errorf("certificate plus bad bearer: %d %s, want 200", r.StatusCode, r.Reason)
	}

	// Token clients keep working on the same server (a client certificate is requested, not required).
	if r := push(f.client(f.teamToken()), alertNotification(deviceToken())); r.StatusCode != 200 {
		t.Errorf("token push: %d %s", r.StatusCode, r.Reason)
	}

	other, err := apnsmock.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ca     *apnsmock.CA
		o      apnsmock.ClientCertOptions
		status int
		reason string
	}{
		{"untrusted CA", other, apnsmock.ClientCertOptions{Topic: certTopic}, 403, apnsmock.ReasonBadCertificate},
		{"expired", f.srv.CA(), apnsmock.ClientCertOptions{Topic: certTopic, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, 403, apnsmock.ReasonBadCertificate},
		{"sandbox certificate", f.srv.CA(), apnsmock.ClientCertOptions{Topic: certTopic, Environment: apnsmock.EnvSandbox}, 403, apnsmock.ReasonBadCertificateEnvironment},
		{"universal certificate", f.srv.CA(), apnsmock.ClientCertOptions{Topic: certTopic}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := alertNotification(deviceToken())
			n.Topic = certTopic
			r := push(f.certClient(f.issue(tc.ca, tc.o)), n)
			if r.StatusCode != tc.status || r.Reason != tc.reason {
				t.Errorf("got %d %s, want %d %s", r.StatusCode, r.Reason, tc.status, tc.reason)
			}
		})
	}
}

func TestCertificateAuthWithoutClientCAs(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	n := alertNotification(deviceToken())
	r, err := f.certClient(f.issue(f.srv.CA(), apnsmock.ClientCertOptions{Topic: topic})).Push(n)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != 403 || r.Reason != apnsmock.ReasonBadCertificate {
		t.Errorf("got %d %s, want 403 BadCertificate", r.StatusCode, r.Reason)
	}
}

// TestGoAwayFrame speaks HTTP/2 frames directly: a push that triggers the GOAWAY fault is
// answered, then the server sends GOAWAY (NO_ERROR, last stream id = that push's) and closes
// the connection.
func TestGoAwayFrame(t *testing.T) {
	f := newFixture(t, apnsmock.Config{RateGoAway: 1})
	conn, err := tls.Dial("tcp", f.srv.Addr().String(), &tls.Config{RootCAs: f.srv.CertPool(), NextProtos: []string{"h2"}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	body := `{"aps":{"alert":"hi"}}`
	for _, h := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/3/device/" + deviceToken()},
		{"apns-topic", topic}, {"authorization", "bearer " + signJWT(t, f.key, keyID, teamID, time.Now())},
		{"content-length", "22"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte(body)); err != nil {
		t.Fatal(err)
	}
	var status string
	var goAway *http2.GoAwayFrame
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "closed") {
				break // the server closed the connection after the GOAWAY
			}
			t.Fatalf("read frame: %v (status %q, goaway %v)", err, status, goAway)
		}
		switch fm := frame.(type) {
		case *http2.SettingsFrame:
			if !fm.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if fm.StreamID == 1 {
				status = fm.PseudoValue("status")
			}
		case *http2.GoAwayFrame:
			goAway = fm
		}
	}
	if status != "200" {
		t.Errorf("push status %q, want 200 before the GOAWAY", status)
	}
	if goAway == nil || goAway.ErrCode != http2.ErrCodeNo || goAway.LastStreamID != 1 {
		t.Fatalf("GOAWAY %+v, want NO_ERROR with last stream 1", goAway)
	}
}

// TestGoAwayClients: with apns2 clients, GOAWAY after every push (and with a Shutdown
// answer) and Server.GoAway all lead to new connections; nothing is accepted twice.
func TestGoAwayClients(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	c := f.client(f.teamToken())
	push := func() *apns2.Response {
		t.Helper()
		r, err := c.Push(alertNotification(deviceToken()))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := push(); r.StatusCode != 200 {
		t.Fatal(r.StatusCode, r.Reason)
	}
	if n := f.srv.GoAway(); n != 1 {
		t.Errorf("GoAway marked %d connections, want 1", n)
	}
	for range 3 { // the first closes the marked connection; the others reuse the new one
		if r := push(); r.StatusCode != 200 {
			t.Fatal(r.StatusCode, r.Reason)
		}
	}
	if n := f.srv.ConnectionsOpened(); n != 2 {
		t.Errorf("connections opened %d, want 2 after one GOAWAY", n)
	}

	f.srv.SetFaults(apnsmock.Faults{RateGoAway: 1})
	before := f.srv.ConnectionsOpened()
	for range 5 {
		if r := push(); r.StatusCode != 200 {
			t.Fatal(r.StatusCode, r.Reason)
		}
	}
	if n := f.srv.ConnectionsOpened() - before; n < 4 {
		t.Errorf("%d new connections for 5 pushes each followed by GOAWAY, want ≥ 4", n)
	}

	f.srv.SetFaults(apnsmock.Faults{RateGoAway: 1, GoAwayReason: apnsmock.ReasonShutdown})
	if r := push(); r.StatusCode != http.StatusServiceUnavailable || r.Reason != apnsmock.ReasonShutdown {
		t.Errorf("got %d %s, want 503 Shutdown", r.StatusCode, r.Reason)
	}
	if got := f.srv.Accepted(); got != 9 {
		t.Errorf("accepted %d, want 9", got)
	}
}
