package apnsmock_test

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

const (
	teamID = "TEAM000001"
	keyID  = "KEY0000001"
	topic  = "com.example.chat"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type fixture struct {
	t   testing.TB
	srv *apnsmock.Server
	key *ecdsa.PrivateKey
}

// newFixture starts a mock with one team key (teamID/keyID) and topic.
func newFixture(t testing.TB, cfg apnsmock.Config) *fixture {
	t.Helper()
	key, _, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil && os.Getenv("APNSMOCK_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := apnsmock.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	srv.AddKey(teamID, keyID, &key.PublicKey)
	srv.AddTopic(topic)
	return &fixture{t: t, srv: srv, key: key}
}

// client returns an apns2 token client on its own HTTP/2 connection.
func (f *fixture) client(tok *token.Token) *apns2.Client {
	c := apns2.NewTokenClient(tok)
	c.Host = f.srv.URL()
	//lint:ignore SA1019 apns2 v0.25.0 builds its client on x/net's http2.Transport
	c.HTTPClient.Transport.(*http2.Transport).TLSClientConfig = &tls.Config{RootCAs: f.srv.CertPool()}
	f.t.Cleanup(c.CloseIdleConnections)
	return c
}

// teamToken is an apns2 token for the fixture's registered key.
func (f *fixture) teamToken() *token.Token {
	return &token.Token{AuthKey: f.key, KeyID: keyID, TeamID: teamID}
}

// fixedToken is an apns2 token that always sends bearer (apns2 will not
// regenerate it because IssuedAt is now).
func fixedToken(bearer string) *token.Token {
	return &token.Token{Bearer: bearer, IssuedAt: time.Now().Unix()}
}

// signJWT builds an APNs provider token with the given claims.
func signJWT(t testing.TB, key *ecdsa.PrivateKey, kid, iss string, iat time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": iss, "iat": iat.Unix()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawClient is a plain HTTP/2 client trusting the mock, for requests apns2
// cannot produce.
func (f *fixture) rawClient() *http.Client {
	f.t.Helper()
	tr := h2Transport(f.srv.CertPool())
	f.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type rawResponse struct {
	status int
	apnsID string
	body   string
}

func (f *fixture) raw(c *http.Client, method, path string, hdr map[string][]string, body string) rawResponse {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL()+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, apnsID: resp.Header.Get("apns-id"), body: string(b)}
}

var tokenSeq struct {
	sync.Mutex
	n int
}

// deviceToken returns a fresh 32-byte hex device token.
func deviceToken() string {
	tokenSeq.Lock()
	defer tokenSeq.Unlock()
	tokenSeq.n++
	b := make([]byte, 32)
	copy(b, fmt.Sprintf("dev-%08d", tokenSeq.n))
	return hex.EncodeToString(b)
}

func alertNotification(tok string) *apns2.Notification {
	return &apns2.Notification{
		DeviceToken: tok,
		Topic:       topic,
		PushType:    apns2.PushTypeAlert,
		Priority:    10,
		Payload:     []byte(`{"aps":{"alert":{"title":"New message"},"mutable-content":1}}`),
	}
}

// h2Transport is a net/http transport speaking only HTTP/2 over TLS.
func h2Transport(roots *x509.CertPool) *http.Transport {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, Protocols: p}
}
