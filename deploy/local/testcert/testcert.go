// Package testcert makes throwaway X.509 certificates for tests of TLS connections: a CA, and
// server and client certificates it signs (ECDSA P-256), generated at test time and written
// into the test's temporary directory. No key is ever committed.
//
//	ca := testcert.NewCA(t)
//	srv := ca.Server(t, "127.0.0.1", "localhost") // tls.Certificate + PEM files
//	cfg := &tls.Config{Certificates: []tls.Certificate{srv.TLS}}
//	// clients trust ca.CertFile (PEM) or ca.Pool()
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	// CertPEM is Cert in PEM form; CertFile holds it.
	CertPEM  []byte
	CertFile string

	key *ecdsa.PrivateKey
	dir string
}

// Pair is a certificate signed by a CA and its key.
type Pair struct {
	// TLS is the certificate chain (leaf, CA) with its key, for tls.Config.Certificates.
	TLS tls.Certificate
	// CertFile (leaf then CA, PEM) and KeyFile (PKCS#8 PEM) hold the same, for programs
	// configured with files.
	CertFile, KeyFile string
}

// NewCA creates a CA valid for a day, with its certificate written to a temporary directory of
// t. It fails the test on error.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcert: CA key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "wakepush test CA " + t.Name()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testcert: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcert: parse CA certificate: %v", err)
	}
	ca := &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), key: key, dir: t.TempDir()}
	ca.CertFile = filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(ca.CertFile, ca.CertPEM, 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	return ca
}

// Pool is a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Server issues a server certificate for hosts (DNS names or IP literals; at least one).
func (ca *CA) Server(t testing.TB, hosts ...string) *Pair {
	t.Helper()
	if len(hosts) == 0 {
		t.Fatal("testcert: a server certificate needs at least one host")
	}
	return ca.issue(t, hosts[0], hosts, x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate with common name name.
func (ca *CA) Client(t testing.TB, name string) *Pair {
	t.Helper()
	return ca.issue(t, name, nil, x509.ExtKeyUsageClientAuth)
}

// seq numbers the files of issued certificates.
var seq atomic.Int64

func (ca *CA) issue(t testing.TB, cn string, hosts []string, usage x509.ExtKeyUsage) *Pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcert: key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testcert: create certificate for %s: %v", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcert: parse certificate for %s: %v", cn, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testcert: marshal key: %v", err)
	}
	base := filepath.Join(ca.dir, fmt.Sprintf("%d-%s", seq.Add(1), sanitize(cn)))
	p := &Pair{
		TLS:      tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf},
		CertFile: base + ".pem",
		KeyFile:  base + ".key",
	}
	if err := os.WriteFile(p.CertFile, append(pemBlock("CERTIFICATE", der), ca.CertPEM...), 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	if err := os.WriteFile(p.KeyFile, pemBlock("PRIVATE KEY", pkcs8), 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	return p
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("testcert: serial: %v", err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}
