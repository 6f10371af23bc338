package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

func TestParseFlagsEnv(t *testing.T) {
	env := map[string]string{
		"APNSMOCK_ADDR":     "127.0.0.1:9999",
		"APNSMOCK_TOPIC":    "a.b.c, d.e.f",
		"APNSMOCK_RATE_503": "0.25",
		"APNSMOCK_LATENCY":  "2ms",
	}
	o, err := parseFlags([]string{"-addr", "127.0.0.1:1234", "-max-streams", "500"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "127.0.0.1:1234" {
		t.Errorf("flag must win over env: addr = %q", o.addr)
	}
	if strings.Join(o.topics, "|") != "a.b.c|d.e.f" || o.rate503 != 0.25 || o.latency != 2*time.Millisecond || o.maxStreams != 500 {
		t.Errorf("options = %+v", o)
	}
	for _, bad := range [][]string{{"-rate-500", "2"}, {"-ca-cert", "x"}, {"stray"}} {
		if _, err := parseFlags(bad, func(string) string { return "" }); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// TestRun starts the command, pushes through apns2 and stops it.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	p8 := filepath.Join(dir, "AuthKey_KEYRUN0001.p8")
	caOut := filepath.Join(dir, "ca.pem")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"-addr", "127.0.0.1:0", "-ca-out", caOut,
			"-ca-cert", filepath.Join(dir, "ca-cert.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem"),
			"-gen-key", "TEAMRUN001:KEYRUN0001:" + p8, "-topic", "im.example.run",
		}, func(string) string { return "" }, pw)
		pw.Close()
	}()

	var url string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if line.Msg == "apns-mock listening" {
			url = line.URL
			break
		}
	}
	if url == "" {
		t.Fatalf("no listening line: %v", <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	caPEM, err := os.ReadFile(caOut)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca-out holds no certificate")
	}
	key, err := token.AuthKeyFromFile(p8)
	if err != nil {
		t.Fatalf("generated .p8 unreadable by apns2: %v", err)
	}
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: "KEYRUN0001", TeamID: "TEAMRUN001"})
	c.Host = url
	//lint:ignore SA1019 apns2 v0.25.0 builds its client on x/net's http2.Transport
	c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	defer c.CloseIdleConnections()
	resp, err := c.Push(&apns2.Notification{
		DeviceToken: strings.Repeat("ab", 32), Topic: "im.example.run", Priority: 10,
		Payload: []byte(`{"aps":{"alert":"hi"}}`),
	})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("push: %v %+v", err, resp)
	}
	h2 := new(http.Protocols)
	h2.SetHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: h2}}
	h, err := hc.Get(url + "/control/healthz")
	if err != nil {
		t.Fatal(err)
	}
	h.Body.Close()
	if h.StatusCode != 200 {
		t.Fatalf("healthz: %d", h.StatusCode)
	}
	if h.ProtoMajor != 2 {
		t.Errorf("control API answered over %s, want HTTP/2", h.Proto)
	}
	hc.CloseIdleConnections()
	c.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop on cancel")
	}

	// A second run reuses the persisted CA and key.
	ca1, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	o, err := parseFlags([]string{"-ca-cert", filepath.Join(dir, "ca-cert.pem"), "-ca-key", filepath.Join(dir, "ca-key.pem")}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ca, err := loadOrCreateCA(o.caCert, o.caKey)
	if err != nil || string(ca.CertPEM()) != string(ca1) || string(caPEM) != string(ca1) {
		t.Fatalf("CA not reused: %v", err)
	}
	if _, err := loadKey("TEAMRUN001:KEYRUN0001:"+p8, false); err != nil {
		t.Fatalf("reload .p8: %v", err)
	}
	if _, err := loadKey("bad-spec", false); err == nil {
		t.Error("bad key spec accepted")
	}
}
