package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wakepush/wakepush/deploy/local/chdb"
)

// checkReady runs one readiness check: "tcp://HOST:PORT" connects, an
// http(s) URL must answer 200 (trusting the PEM CA file caPath for https
// when given).
func checkReady(ctx context.Context, url, caPath string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if addr, ok := strings.CutPrefix(url, "tcp://"); ok {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	transport := &http.Transport{DisableKeepAlives: true}
	if caPath != "" {
		pemBytes, err := os.ReadFile(caPath)
		if err != nil {
			return fmt.Errorf("CA for %s: %w", url, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return fmt.Errorf("CA for %s: no certificate in %s", url, caPath)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		transport.ForceAttemptHTTP2 = true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %q", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// prepareClickHouse makes sure the pinned libchdb is in the cache (the first
// run downloads it with npm) and hands its path to chdb-server.
func prepareClickHouse(ctx context.Context, s *stack) error {
	s.logf("clickhouse: checking libchdb %s@%s (the first run downloads 178 MB with npm)", chdb.NPMPackage, chdb.Version)
	lib, err := chdb.EnsureLibrary(ctx)
	if err != nil {
		return err
	}
	s.vars["chdb-lib"] = lib
	return nil
}

// prepareAPNsKey creates the dev APNs token key (ECDSA P-256, PKCS#8 PEM,
// like Apple's .p8 files) once; the mock verifies tokens against it and the
// sender signs with it (deploy/local/apps.yaml).
func prepareAPNsKey(_ context.Context, s *stack) error {
	path := filepath.Join(s.opts.data, "dev", "apns-key.p8")
	created, err := ensureAPNsKey(path)
	if err != nil {
		return err
	}
	if created {
		s.logf("apns-mock: created the dev APNs key %s (team %s, key %s)", path, devAPNsTeamID, devAPNsKeyID)
	}
	return nil
}

func ensureAPNsKey(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return false, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pemBytes, 0o600); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}
