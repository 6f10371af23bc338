package testcert_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/wakepush/wakepush/deploy/local/testcert"
)

// The issued server certificate verifies for its hosts only, against the CA file; the client
// certificate verifies for client auth; the files load as a key pair.
func TestIssue(t *testing.T) {
	ca := testcert.NewCA(t)
	pemCA, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemCA) {
		t.Fatal("CA file holds no certificate")
	}
	srv := ca.Server(t, "127.0.0.1", "broker.test")
	for _, tc := range []struct {
		name   string
		wantOK bool
	}{{"127.0.0.1", true}, {"broker.test", true}, {"other.test", false}, {"127.0.0.2", false}} {
		_, err := srv.TLS.Leaf.Verify(x509.VerifyOptions{DNSName: tc.name, Roots: roots})
		if (err == nil) != tc.wantOK {
			t.Errorf("verify server certificate for %s: %v, want ok=%v", tc.name, err, tc.wantOK)
		}
	}
	cl := ca.Client(t, "alice")
	if _, err := cl.TLS.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cl.TLS.Leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("client certificate verifies without its CA")
	}
	for _, p := range []*testcert.Pair{srv, cl} {
		if _, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile); err != nil {
			t.Errorf("load %s: %v", p.CertFile, err)
		}
	}
}
