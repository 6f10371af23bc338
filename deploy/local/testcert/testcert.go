// Package testcert makes throwaway X.509 certificates for tests and mocks of TLS connections: a
// CA, and server and client certificates it signs (ECDSA P-256), generated at run time (for
// tests, written into the test's temporary directory). No key is ever committed.
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

// Authority is a certificate authority usable outside tests too: the APNs and FCM mocks
// (loadtest/mocks/apnsmock) sign their server and push certificates with one.
type Authority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewAuthority creates a self-signed ECDSA P-256 CA for subject, valid from an hour ago until
// notAfter.
func NewAuthority(subject pkix.Name, notAfter time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testcert: CA key: %w", err)
	}
	sn, err := RandomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testcert: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testcert: parse CA certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Sign issues tmpl (subject, names, usages, validity and extensions as given) for a fresh ECDSA
// P-256 key, filling in a random serial number when tmpl has none. The chain is the leaf then
// the CA; Leaf is set.
func (a *Authority) Sign(tmpl *x509.Certificate) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcert: key: %w", err)
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = RandomSerial(); err != nil {
			return tls.Certificate{}, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcert: create certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("testcert: parse certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	return tls.Certificate{Certificate: [][]byte{der, a.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// AddHosts adds hosts (DNS names or IP literals; empty ones are skipped) to tmpl's names.
func AddHosts(tmpl *x509.Certificate, hosts ...string) {
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}

// RandomSerial returns a random 127-bit certificate serial number.
func RandomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("testcert: serial: %w", err)
	}
	return n, nil
}

// CA is a test certificate authority: an Authority valid for a day whose certificate and
// issued pairs are written into the test's temporary directory.
type CA struct {
	Authority
	// CertPEM is Cert in PEM form; CertFile holds it.
	CertPEM  []byte
	CertFile string

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
	a, err := NewAuthority(pkix.Name{CommonName: "wakepush test CA " + t.Name()}, time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Authority: *a, CertPEM: pemBlock("CERTIFICATE", a.Cert.Raw), dir: t.TempDir()}
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
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	AddHosts(tmpl, hosts...)
	cert, err := ca.Sign(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatalf("testcert: marshal key: %v", err)
	}
	base := filepath.Join(ca.dir, fmt.Sprintf("%d-%s", seq.Add(1), sanitize(cn)))
	p := &Pair{TLS: cert, CertFile: base + ".pem", KeyFile: base + ".key"}
	if err := os.WriteFile(p.CertFile, append(pemBlock("CERTIFICATE", cert.Certificate[0]), ca.CertPEM...), 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	if err := os.WriteFile(p.KeyFile, pemBlock("PRIVATE KEY", pkcs8), 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
	return p
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
