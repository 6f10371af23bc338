package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

func TestRun(t *testing.T) {
	dir := t.TempDir()
	sa, ca := filepath.Join(dir, "sa.json"), filepath.Join(dir, "ca.pem")
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan *fcmmock.Server, 1)
	errc := make(chan error, 1)
	env := map[string]string{"FCMMOCK_RATE_503": "1", "FCMMOCK_RETRY_AFTER": "4"}
	var out syncBuf
	go func() {
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-project", "p1", "-service-account-out", sa, "-ca-out", ca},
			func(k string) string { return env[k] }, &out, func(s *fcmmock.Server) { readyc <- s })
	}()
	var srv *fcmmock.Server
	select {
	case srv = <-readyc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	var acct fcmmock.ServiceAccount
	b, err := os.ReadFile(sa)
	if err != nil || json.Unmarshal(b, &acct) != nil || acct.ProjectID != "p1" || acct.TokenURI != srv.TokenURL() {
		t.Fatalf("service account file: %v %+v", err, acct)
	}
	if pem, _ := os.ReadFile(ca); !bytes.Equal(pem, srv.CACertPEM()) {
		t.Fatal("ca-out differs")
	}
	if f := srv.Faults(); f.Rate503 != 1 || f.RetryAfter != 4 {
		t.Fatalf("faults from env: %+v", f)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.ClientTLSConfig()}}
	resp, err := hc.Get(srv.URL() + "/control/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out.b.Bytes(), []byte("fcm-mock listening")) {
		t.Fatalf("log: %s", out.b.String())
	}
}
