package apnsmock

import (
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"testing"
)

// TestServer is a mock started for a test by [StartTest], with the files a client of it is
// configured with.
type TestServer struct {
	*Server
	// Key signs provider tokens the mock accepts (team and key id as given to StartTest).
	Key *ecdsa.PrivateKey
	// KeyFile holds Key as an Apple .p8 file; CAFile the mock's CA certificate (PEM).
	KeyFile, CAFile string
}

// StartTest starts a mock on a free loopback port with cfg (its Addr is ignored), trusting
// a new signing key for teamID/keyID and accepting topics, with the key and the CA written to
// the test's temporary directory. The mock is closed when the test ends; errors fail the test.
func StartTest(tb testing.TB, cfg Config, teamID, keyID string, topics ...string) *TestServer {
	tb.Helper()
	cfg.Addr = "127.0.0.1:0"
	mock, err := New(cfg)
	if err != nil {
		tb.Fatalf("apns mock: %v", err)
	}
	tb.Cleanup(func() { mock.Close() })
	key, p8, err := NewSigningKey()
	if err != nil {
		tb.Fatalf("apns mock signing key: %v", err)
	}
	mock.AddKey(teamID, keyID, &key.PublicKey)
	for _, topic := range topics {
		mock.AddTopic(topic)
	}
	dir := tb.TempDir()
	s := &TestServer{Server: mock, Key: key, KeyFile: filepath.Join(dir, "apns.p8"), CAFile: filepath.Join(dir, "apns-ca.pem")}
	if err := os.WriteFile(s.KeyFile, p8, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(s.CAFile, mock.CACertPEM(), 0o600); err != nil {
		tb.Fatal(err)
	}
	return s
}
