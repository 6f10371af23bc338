package apns

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sideshow/apns2"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
)

// certFixture is a mock trusting its own CA for client certificates and a pool whose apps
// authenticate with a certificate issued for testApp.
type certFixture struct {
	mock *apnsmock.Server
	set  *apps.Set
	pool *Pool
}

func newCertFixture(t *testing.T, appsYAML func(certFile, caFile, endpoint string) string) *certFixture {
	t.Helper()
	mock, err := apnsmock.New(apnsmock.Config{Addr: "127.0.0.1:0", Environment: apnsmock.EnvProduction})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mock.Close() })
	mock.AddClientCA(mock.CA().Cert)
	cc, err := mock.CA().IssueClientCert(apnsmock.ClientCertOptions{Topic: testApp, TeamID: testTeam, Environment: apnsmock.EnvProduction})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, caFile := filepath.Join(dir, "push.pem"), filepath.Join(dir, "ca.pem")
	writeFile(t, certFile, cc.PEM())
	writeFile(t, caFile, mock.CACertPEM())
	set, err := apps.Parse([]byte(appsYAML(certFile, caFile, mock.URL())), "apps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range set.All() {
		var chk config.Check
		Validate(a, &chk)
		if err := chk.Err(); err != nil {
			t.Fatal(err)
		}
	}
	pool, err := New(set.All(), DefaultOptions)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &certFixture{mock: mock, set: set, pool: pool}
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *certFixture) target(id, tok string) provider.Target {
	app, ok := f.set.Get(id)
	if !ok {
		panic(id)
	}
	return provider.Target{App: app, DeviceID: "dev-" + tok[56:], Token: tok}
}

// TestCertificateAuthAgainstMock pushes with certificate auth end to end: the certificate
// file through apps.Parse, Validate and New, our transport with the certificate in its TLS
// config, the mock authenticating the connection by it; a topic the certificate is not for is
// a configuration error.
func TestCertificateAuthAgainstMock(t *testing.T) {
	f := newCertFixture(t, func(certFile, caFile, endpoint string) string {
		return fmt.Sprintf(`apps:
  - id: %[1]s
    platform: apns
    apns: {certificate_file: %[2]s, endpoint: %[4]q, ca_file: %[3]s}
  - id: %[1]s.calls
    platform: apns
    apns: {topic: %[1]s, certificate_file: %[2]s, endpoint: %[4]q, ca_file: %[3]s, push_type: voip}
  - id: im.other.app
    platform: apns
    apns: {certificate_file: %[2]s, endpoint: %[4]q, ca_file: %[3]s}
`, testApp, certFile, caFile, endpoint)
	})
	ctx := context.Background()

	tok := newToken()
	res := f.pool.Send(ctx, f.target(testApp, tok), wake("0190d8a8-7d2e-7c3b-9f00-00000000c001"))
	if res.Action != provider.Accepted || res.StatusCode != 200 {
		t.Fatalf("certificate push: %+v", res)
	}
	got := f.mock.PushesFor(tok)
	if len(got) != 1 || got[0].Auth != "certificate" || got[0].Topic != testApp || got[0].TeamID != testTeam || got[0].KeyID != "" {
		t.Fatalf("mock recorded %+v, want one certificate-authenticated push for %s by %s", got, testApp, testTeam)
	}

	// The same certificate covers the bundle's .voip topic (urgent wake of a voip app).
	w := wake("0190d8a8-7d2e-7c3b-9f00-00000000c002")
	w.Urgent = true
	vtok := newToken()
	if res := f.pool.Send(ctx, f.target(testApp+".calls", vtok), w); res.Action != provider.Accepted {
		t.Fatalf("voip push: %+v", res)
	}
	if got := f.mock.PushesFor(vtok); len(got) != 1 || got[0].Topic != testApp+".voip" || got[0].PushType != "voip" {
		t.Fatalf("voip push recorded %+v", got)
	}

	// A topic the certificate is not for: 400 TopicDisallowed, a configuration error.
	res = f.pool.Send(ctx, f.target("im.other.app", newToken()), wake("w-other"))
	if res.Action != provider.Configuration || res.StatusCode != 400 || res.Reason != apns2.ReasonTopicDisallowed {
		t.Fatalf("wrong topic: %+v, want Configuration TopicDisallowed", res)
	}
}

// TestCertificateAuthRejected: a certificate the mock does not trust, or one for the other
// environment, is a configuration error (403 BadCertificate / BadCertificateEnvironment).
func TestCertificateAuthRejected(t *testing.T) {
	for _, tc := range []struct {
		name, env, reason string
		trust             bool
	}{
		{"untrusted CA", apnsmock.EnvProduction, apns2.ReasonBadCertificate, false},
		{"sandbox certificate on production", apnsmock.EnvSandbox, apns2.ReasonBadCertificateEnvironment, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mock, err := apnsmock.New(apnsmock.Config{Addr: "127.0.0.1:0", Environment: apnsmock.EnvProduction})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { mock.Close() })
			ca := mock.CA()
			if !tc.trust {
				if ca, err = apnsmock.GenerateCA(); err != nil {
					t.Fatal(err)
				}
			}
			mock.AddClientCA(mock.CA().Cert)
			cc, err := ca.IssueClientCert(apnsmock.ClientCertOptions{Topic: testApp, Environment: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			certFile, caFile := filepath.Join(dir, "push.pem"), filepath.Join(dir, "ca.pem")
			writeFile(t, certFile, cc.PEM())
			writeFile(t, caFile, mock.CACertPEM())
			set, err := apps.Parse(fmt.Appendf(nil, "apps:\n  - id: %s\n    platform: apns\n    apns: {certificate_file: %s, endpoint: %q, ca_file: %s}\n",
				testApp, certFile, mock.URL(), caFile), "apps.yaml")
			if err != nil {
				t.Fatal(err)
			}
			pool, err := New(set.All(), DefaultOptions)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			app, _ := set.Get(testApp)
			tok := newToken()
			res := pool.Send(context.Background(), provider.Target{App: app, DeviceID: "d", Token: tok}, wake("w"))
			if res.Action != provider.Configuration || res.StatusCode != 403 || res.Reason != tc.reason {
				t.Fatalf("got %+v, want Configuration 403 %s", res, tc.reason)
			}
		})
	}
}

// TestAuthConfigValidation: exactly one of token auth or certificate auth; the certificate
// and its password must load.
func TestAuthConfigValidation(t *testing.T) {
	ca, err := apnsmock.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := ca.IssueClientCert(apnsmock.ClientCertOptions{Topic: testApp})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.IssueClientCert(apnsmock.ClientCertOptions{Topic: testApp,
		NotBefore: time.Now().AddDate(-2, 0, 0), NotAfter: time.Now().AddDate(-1, 0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	_, p8, err := apnsmock.NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, b)
		return p
	}
	keyFile := file("key.p8", p8)
	certFile := file("push.pem", cc.PEM())
	expiredFile := file("expired.pem", expired.PEM())
	// The key encrypted with a password (legacy PEM encryption, as Keychain exports do).
	kblk, _ := pem.Decode(cc.KeyPEM)
	//lint:ignore SA1019 APNs certificates exported from Keychain still come this way
	enc, err := x509.EncryptPEMBlock(rand.Reader, kblk.Type, kblk.Bytes, []byte("s3cret"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	encFile := file("push-enc.pem", append(append([]byte(nil), cc.CertPEM...), pem.EncodeToMemory(enc)...))
	pwFile := file("password", []byte("s3cret\n"))
	badPwFile := file("bad-password", []byte("wrong\n"))

	for _, tc := range []struct {
		name, apns string
		want       string // "" = valid; else part of the parse or Validate error
	}{
		{"token", fmt.Sprintf("{team_id: T, key_id: K, key_file: %s}", keyFile), ""},
		{"certificate", fmt.Sprintf("{certificate_file: %s}", certFile), ""},
		{"encrypted certificate key with password", fmt.Sprintf("{certificate_file: %s, certificate_password_file: %s}", encFile, pwFile), ""},
		{"both token and certificate", fmt.Sprintf("{team_id: T, key_id: K, key_file: %s, certificate_file: %s}", keyFile, certFile), "not both"},
		{"certificate and a stray key_id", fmt.Sprintf("{key_id: K, certificate_file: %s}", certFile), "not both"},
		{"neither", "{topic: im.x}", "team_id, key_id and key_file (token auth) or certificate_file"},
		{"partial token", fmt.Sprintf("{team_id: T, key_file: %s}", keyFile), "team_id, key_id and key_file"},
		{"password without certificate", fmt.Sprintf("{team_id: T, key_id: K, key_file: %s, certificate_password_file: %s}", keyFile, pwFile), "certificate_password_file needs certificate_file"},
		{"missing certificate file", fmt.Sprintf("{certificate_file: %s}", filepath.Join(dir, "nope.pem")), "apns.certificate_file"},
		{"not a certificate", fmt.Sprintf("{certificate_file: %s}", keyFile), "apns.certificate_file"},
		{"wrong password", fmt.Sprintf("{certificate_file: %s, certificate_password_file: %s}", encFile, badPwFile), "apns.certificate_file"},
		{"encrypted key without password", fmt.Sprintf("{certificate_file: %s}", encFile), "apns.certificate_file"},
		{"missing password file", fmt.Sprintf("{certificate_file: %s, certificate_password_file: %s}", encFile, filepath.Join(dir, "nope")), "apns.certificate_password_file"},
		{"expired certificate", fmt.Sprintf("{certificate_file: %s}", expiredFile), "expired on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := apps.Parse([]byte("apps:\n  - id: im.x\n    platform: apns\n    apns: "+tc.apns+"\n"), "apps.yaml")
			if err == nil {
				var chk config.Check
				app, _ := set.Get("im.x")
				Validate(app, &chk)
				err = chk.Err()
				if err == nil {
					// What validates also builds.
					if _, nerr := New(set.All(), DefaultOptions); nerr != nil {
						t.Fatalf("New after a clean Validate: %v", nerr)
					}
				}
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestGoAwayReconnects: the mock closes connections with GOAWAY after some of the pushes
// (graceful: streams in flight finish); the pool reconnects, retried pushes go out on new
// connections, and every wake is accepted exactly once.
func TestGoAwayReconnects(t *testing.T) {
	for _, reason := range []string{"", apnsmock.ReasonShutdown} {
		t.Run("reason="+reason, func(t *testing.T) {
			f := newMockFixture(t, apnsmock.Config{RateGoAway: 0.1, GoAwayReason: reason}, DefaultOptions)
			const wakes, par = 200, 16
			toks := make([]string, wakes)
			for i := range toks {
				toks[i] = newToken()
			}
			var (
				mu      sync.Mutex
				retries = map[string]int{}
				wg      sync.WaitGroup
				next    = make(chan int)
			)
			for range par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						for attempt := 1; ; attempt++ {
							res := f.pool.Send(context.Background(), f.target(toks[i]), wake(fmt.Sprintf("w-%d", i)))
							if res.Action == provider.Accepted {
								break
							}
							if res.Action != provider.Retry || attempt == 10 {
								t.Errorf("wake %d attempt %d: %+v", i, attempt, res)
								break
							}
							mu.Lock()
							retries[res.Reason]++
							mu.Unlock()
						}
					}
				}()
			}
			start := time.Now()
			for i := range wakes {
				next <- i
			}
			close(next)
			wg.Wait()
			elapsed := time.Since(start)
			for i, tok := range toks {
				if n := len(f.mock.PushesFor(tok)); n != 1 {
					t.Errorf("wake %d delivered %d times, want once", i, n)
				}
			}
			opened := f.mock.ConnectionsOpened()
			if opened < 5 {
				t.Errorf("%d connections opened, want a reconnect after each of the ~20 GOAWAYs", opened)
			}
			if reason == "" && len(retries) != 0 {
				// A graceful GOAWAY loses nothing: streams the server had are answered, later
				// ones are retried by the HTTP/2 transport on a new connection.
				t.Errorf("retries %v, want none", retries)
			}
			if reason != "" && retries[apnsmock.ReasonShutdown] == 0 {
				t.Errorf("retries %v, want Shutdown answers retried", retries)
			}
			t.Logf("%d wakes in %v, connections opened: %d, retries by reason: %v", wakes, elapsed, opened, retries)
		})
	}
}
