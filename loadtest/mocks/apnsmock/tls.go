package apnsmock

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/wakepush/wakepush/deploy/local/testcert"
)

// CA is the certificate authority the mock signs its server certificate with.
// Clients trust [CA.CertPEM] (or [Server.CertPool]).
type CA struct{ testcert.Authority }

// GenerateCA creates a new self-signed ECDSA P-256 CA valid for ten years.
func GenerateCA() (*CA, error) {
	a, err := testcert.NewAuthority(pkix.Name{CommonName: "wakepush apns-mock CA", Organization: []string{"wakepush loadtest"}},
		time.Now().AddDate(10, 0, 0))
	if err != nil {
		return nil, err
	}
	return &CA{*a}, nil
}

// LoadCA parses a CA certificate and its private key (PKCS#8 or SEC 1 EC PEM),
// e.g. files written by a previous run, so that clients keep trusting restarts.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("apnsmock: CA certificate is not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("apnsmock: parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("apnsmock: certificate is not a CA")
	}
	key, err := parseECPrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("apnsmock: CA key: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("apnsmock: CA key does not match CA certificate")
	}
	return &CA{testcert.Authority{Cert: cert, Key: key}}, nil
}

// CertPEM returns the CA certificate in PEM form.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA private key as PKCS#8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// IssueServerCert signs (for any mock server: APNs, FCM) a fresh ECDSA P-256 server certificate valid for
// 127.0.0.1, ::1, localhost and the extra hosts (DNS names or IP literals).
func (ca *CA) IssueServerCert(hosts []string) (tls.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "apns-mock", Organization: []string{"wakepush loadtest"}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	testcert.AddHosts(tmpl, append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)...)
	return ca.Sign(tmpl)
}

// NewSigningKey creates an APNs-style token signing key: an ECDSA P-256 private
// key and its PKCS#8 PEM encoding (the format of Apple's AuthKey_XXXX.p8 files,
// readable by token.AuthKeyFromBytes of sideshow/apns2).
func NewSigningKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM extracts an ECDSA P-256 public key from PEM data holding a
// PUBLIC KEY (PKIX), a PRIVATE KEY (PKCS#8, i.e. an Apple .p8 file), an
// EC PRIVATE KEY (SEC 1) or a CERTIFICATE.
func ParsePublicKeyPEM(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("apnsmock: no PEM block found")
	}
	var pub any
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("apnsmock: parse public key: %w", err)
		}
		pub = k
	case "PRIVATE KEY", "EC PRIVATE KEY":
		k, err := parseECPrivateKeyPEM(data)
		if err != nil {
			return nil, err
		}
		pub = &k.PublicKey
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("apnsmock: parse certificate: %w", err)
		}
		pub = c.PublicKey
	default:
		return nil, fmt.Errorf("apnsmock: unsupported PEM block %q", block.Type)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("apnsmock: key is not an ECDSA P-256 key")
	}
	return ec, nil
}

func parseECPrivateKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("apnsmock: no PEM block found")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("apnsmock: parse PKCS#8 key: %w", err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, errors.New("apnsmock: PKCS#8 key is not an ECDSA key")
		}
		return ec, nil
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("apnsmock: parse EC key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("apnsmock: unsupported private key PEM block %q", block.Type)
	}
}
