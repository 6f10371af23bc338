package apnsmock_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

func TestControlAPI(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	ctl := f.rawClient()
	post := func(path, body string) rawResponse {
		t.Helper()
		return f.raw(ctl, "POST", path, map[string][]string{"content-type": {"application/json"}}, body)
	}

	if r := f.raw(ctl, "GET", "/control/healthz", nil, ""); r.status != 200 || r.body != "ok\n" {
		t.Fatalf("healthz: %+v", r)
	}

	// Register a second team's key and a topic over the API.
	key, _, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	body, _ := json.Marshal(map[string]string{"team_id": "TEAMCTL001", "key_id": "KEYCTL0001", "public_key_pem": pubPEM})
	if r := post("/control/keys", string(body)); r.status != 204 {
		t.Fatalf("keys: %+v", r)
	}
	if r := post("/control/keys", `{"team_id":"T","key_id":"K","public_key_pem":"nope"}`); r.status != 400 {
		t.Fatalf("bad key accepted: %+v", r)
	}
	if r := post("/control/topics", `{"topic":"org.example.ctl"}`); r.status != 204 {
		t.Fatalf("topics: %+v", r)
	}

	c := f.client(fixedToken(signJWT(t, key, "KEYCTL0001", "TEAMCTL001", time.Now())))
	tok := deviceToken()
	n := alertNotification(tok)
	n.Topic = "org.example.ctl"
	if resp, err := c.Push(n); err != nil || resp.StatusCode != 200 {
		t.Fatalf("push via API-registered key/topic: %v %+v", err, resp)
	}

	r := f.raw(ctl, "GET", "/control/pushes?token="+tok, nil, "")
	var pushes []apnsmock.Push
	if err := json.Unmarshal([]byte(r.body), &pushes); err != nil || len(pushes) != 1 {
		t.Fatalf("pushes: %s (%v)", r.body, err)
	}
	if pushes[0].Token != tok || pushes[0].TeamID != "TEAMCTL001" || !strings.Contains(string(pushes[0].Payload), "mutable-content") {
		t.Errorf("pushes[0] = %+v", pushes[0])
	}

	// Unregister over the API.
	if r := post("/control/unregister", `{"token":"`+tok+`","timestamp_ms":1700000000123}`); r.status != 204 {
		t.Fatalf("unregister: %+v", r)
	}
	resp, err := c.Push(n)
	if err != nil || resp.StatusCode != 410 || resp.Timestamp.Unix() != 1700000000 {
		t.Fatalf("after unregister: %v %+v", err, resp)
	}
	bad := deviceToken()
	if r := post("/control/bad-tokens", `{"token":"`+bad+`"}`); r.status != 204 {
		t.Fatalf("bad-tokens: %+v", r)
	}
	n.DeviceToken = bad
	if resp, _ := c.Push(n); resp == nil || resp.Reason != apnsmock.ReasonBadDeviceToken {
		t.Fatalf("bad token: %+v", resp)
	}

	// Faults over the API.
	if r := post("/control/faults", `{"rate_503":1}`); r.status != 204 {
		t.Fatalf("faults: %+v", r)
	}
	n.DeviceToken = deviceToken()
	if resp, _ := c.Push(n); resp == nil || resp.StatusCode != 503 {
		t.Fatalf("after rate_503=1: %+v", resp)
	}
	if r := f.raw(ctl, "GET", "/control/faults", nil, ""); !strings.Contains(r.body, `"rate_503":1`) {
		t.Fatalf("GET faults: %s", r.body)
	}
	if r := post("/control/faults", `{"rate_503":0,"latency_ms":1,"latency_jitter_ms":2}`); r.status != 204 {
		t.Fatalf("faults reset: %+v", r)
	}
	if f.srv.Faults().Latency == nil || f.srv.Faults().Rate503 != 0 {
		t.Fatalf("faults = %+v", f.srv.Faults())
	}
	if r := post("/control/faults", `{"rate_500":2}`); r.status != 400 {
		t.Fatalf("rate 2 accepted: %+v", r)
	}

	// Metrics count requests by status and reason.
	r = f.raw(ctl, "GET", "/metrics", nil, "")
	for _, want := range []string{
		`apnsmock_requests_total{reason="",status="200"} 1`,
		`apnsmock_requests_total{reason="Unregistered",status="410"} 1`,
		`apnsmock_requests_total{reason="BadDeviceToken",status="400"} 1`,
		`apnsmock_requests_total{reason="ServiceUnavailable",status="503"} 1`,
		`apnsmock_faults_injected_total{kind="503"} 1`,
		`apnsmock_connections_open`,
		`apnsmock_jwt_verifications_total{result="cache_hit"}`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	if r := f.raw(ctl, "GET", "/control/stats", nil, ""); !strings.Contains(r.body, `"accepted":1`) {
		t.Errorf("stats: %s", r.body)
	}
	if r := post("/control/reset", ``); r.status != 204 {
		t.Fatalf("reset: %+v", r)
	}
	if len(f.srv.Pushes()) != 0 {
		t.Error("reset kept pushes")
	}
	if r := f.raw(ctl, "GET", "/control/pushes", nil, ""); strings.TrimSpace(r.body) != "[]" {
		t.Errorf("pushes after reset: %s", r.body)
	}
	if r := post("/control/drop-connections", ``); r.status != 200 || !strings.Contains(r.body, `"dropped"`) {
		t.Errorf("drop-connections: %+v", r)
	}
}

// TestHTTP1 checks that HTTP/1.1 reaches the control API but not the APNs
// endpoint, which is HTTP/2 only.
func TestHTTP1(t *testing.T) {
	f := newFixture(t, apnsmock.Config{})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.srv.CertPool()}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	resp, err := c.Get(f.srv.URL() + "/control/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Fatalf("healthz over HTTP/1.1: %d %s", resp.StatusCode, resp.Proto)
	}
	resp, err = c.Post(f.srv.URL()+"/3/device/"+deviceToken(), "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("APNs over HTTP/1.1: %d", resp.StatusCode)
	}
}

// TestHTTP2Settings reads the server's SETTINGS frame: ALPN must be h2 and
// SETTINGS_MAX_CONCURRENT_STREAMS the configured value.
func TestHTTP2Settings(t *testing.T) {
	for _, tt := range []struct {
		cfg  uint32
		want uint32
	}{{0, apnsmock.DefaultMaxConcurrentStreams}, {7, 7}} {
		f := newFixture(t, apnsmock.Config{MaxConcurrentStreams: tt.cfg})
		conn, err := tls.Dial("tcp", f.srv.Addr().String(), &tls.Config{RootCAs: f.srv.CertPool(), NextProtos: []string{"h2"}, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
			t.Fatalf("ALPN = %q, want h2", p)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(conn, conn)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		var got uint32
		for {
			frame, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if sf, ok := frame.(*http2.SettingsFrame); ok && !sf.IsAck() {
				got, _ = sf.Value(http2.SettingMaxConcurrentStreams)
				break
			}
		}
		conn.Close()
		if got != tt.want {
			t.Errorf("MaxConcurrentStreams %d: SETTINGS says %d, want %d", tt.cfg, got, tt.want)
		}
	}
}

func TestCertificateAndKeys(t *testing.T) {
	ca, err := apnsmock.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := apnsmock.LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := apnsmock.New(apnsmock.Config{CA: loaded, Hosts: []string{"apns-mock", "10.1.2.3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if string(srv.CACertPEM()) != string(ca.CertPEM()) {
		t.Error("server does not use the given CA")
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost", "apns-mock", "10.1.2.3"} {
		conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: srv.CertPool(), ServerName: host, NextProtos: []string{"h2"}})
		if err != nil {
			t.Errorf("TLS for %s: %v", host, err)
			continue
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		if leaf.PublicKeyAlgorithm != x509.ECDSA {
			t.Errorf("server key is %v, want ECDSA", leaf.PublicKeyAlgorithm)
		}
		conn.Close()
	}

	priv, p8, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := apnsmock.ParsePublicKeyPEM(p8)
	if err != nil || !pub.Equal(&priv.PublicKey) {
		t.Fatalf("ParsePublicKeyPEM(.p8) = %v, %v", pub, err)
	}
	if _, err := apnsmock.ParsePublicKeyPEM([]byte("garbage")); err == nil {
		t.Error("ParsePublicKeyPEM accepted garbage")
	}
}
