package clickhousex_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/testcert"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
	"github.com/wakepush/wakepush/services/internal/config"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestConnect runs a real ClickHouse with a password user whose native port is reachable over
// mutual TLS, with a certificate for the name clickhouse.test only, and connects through
// options built by Apply: the right CA, server name, client certificate and password connect;
// leaving out any one of them does not. The wrong password comes last: libchdb ends after
// refusing a native login (deploy/local/chdb/security.go).
func TestConnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ca := testcert.NewCA(t)
	client := ca.Client(t, "recorder")
	srv, err := chdb.Start(ctx, chdb.StartOptions{
		DataDir: filepath.Join(t.TempDir(), "clickhouse"),
		Output:  testWriter{t},
		Users:   []chdb.User{{Name: "recorder", Password: "ch-s3cret"}},
		TLS: &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "clickhouse.test").TLS},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	plainDSN := "clickhouse://" + srv.TCPAddr + "/default"
	tlsDSN := "clickhouse://" + srv.SecureTCPAddr + "/default"
	mutual := clickhousex.Config{TLS: true, CAFile: ca.CertFile, ServerName: "clickhouse.test", CertFile: client.CertFile, KeyFile: client.KeyFile,
		User: "recorder", Password: "ch-s3cret"}
	without := func(f func(*clickhousex.Config)) clickhousex.Config {
		c := mutual
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		dsn     string
		cfg     clickhousex.Config
		wantErr string // "" = connects as recorder
	}{
		{"password", plainDSN, clickhousex.Config{User: "recorder", Password: "ch-s3cret"}, ""},
		{"password in the DSN", "clickhouse://recorder:ch-s3cret@" + srv.TCPAddr + "/default", clickhousex.Config{}, ""},
		{"mutual tls", tlsDSN, mutual, ""},
		{"mutual tls, secure=true in the DSN", tlsDSN + "?secure=true", without(func(c *clickhousex.Config) { c.TLS = false }), ""},
		{"tls without the CA", tlsDSN, without(func(c *clickhousex.Config) { c.CAFile = "" }), "certificate signed by unknown authority"},
		{"tls without the server name", tlsDSN, without(func(c *clickhousex.Config) { c.ServerName = "" }), "doesn't contain any IP SANs"},
		{"tls without a client certificate", tlsDSN, without(func(c *clickhousex.Config) { c.CertFile, c.KeyFile = "", "" }), "certificate required"},
		{"plaintext to the tls port", tlsDSN, clickhousex.Config{User: "recorder", Password: "ch-s3cret"}, "EOF"},
		{"wrong password", plainDSN, clickhousex.Config{User: "recorder", Password: "wrong"}, "Authentication failed"}, // last
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := clickhouse.ParseDSN(tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.cfg.Apply(opts); err != nil {
				t.Fatal(err)
			}
			opts.DialTimeout = 5 * time.Second
			conn, err := clickhouse.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var user string
			err = conn.QueryRow(ctx, "SELECT currentUser()").Scan(&user)
			switch {
			case tc.wantErr == "" && (err != nil || user != "recorder"):
				t.Fatalf("currentUser() = %q, %v; want recorder", user, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("currentUser() = %q, %v; want an error containing %q", user, err, tc.wantErr)
			}
		})
	}
}

// Apply refuses conflicting or incomplete settings, without showing the password.
func TestApplyErrors(t *testing.T) {
	ca := testcert.NewCA(t)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dsn  string
		cfg  clickhousex.Config
		want string
	}{
		{"two passwords", "clickhouse://u:dsn-pw-9f2@h:9000/db", clickhousex.Config{Password: "cfg-pw-7c1"}, "set it in one place"},
		{"two users", "clickhouse://u@h:9000/db", clickhousex.Config{User: "v"}, "set the user in one place"},
		{"ca without tls", "clickhouse://h:9000/db", clickhousex.Config{CAFile: ca.CertFile, Password: "cfg-pw-7c1"}, "need TLS"},
		{"server name without tls", "clickhouse://h:9000/db", clickhousex.Config{ServerName: "ch"}, "need TLS"},
		{"cert without key", "clickhouse://h:9000/db", clickhousex.Config{TLS: true, CertFile: "c.pem"}, "go together"},
		{"missing ca", "clickhouse://h:9000/db", clickhousex.Config{TLS: true, CAFile: "/nonexistent/ca.pem"}, "WAKEPUSH_CLICKHOUSE_CA_FILE"},
		{"ca not pem", "clickhouse://h:9000/db", clickhousex.Config{TLS: true, CAFile: notPEM}, "no PEM certificates"},
		{"missing client cert", "clickhouse://h:9000/db", clickhousex.Config{TLS: true, CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}, "_CERT_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts, err := clickhouse.ParseDSN(tc.dsn)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.cfg.Apply(opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "-pw-") {
				t.Fatalf("error shows a password: %v", err)
			}
		})
	}
	// Same user in both places, and no settings at all, are fine.
	for _, dsn := range []string{"clickhouse://u@h:9000/db", "clickhouse://h:9000/db"} {
		opts, _ := clickhouse.ParseDSN(dsn)
		if err := (&clickhousex.Config{User: "u"}).Apply(opts); err != nil || opts.Auth.Username != "u" || opts.TLS != nil {
			t.Errorf("%s: %v, user %q, tls %v", dsn, err, opts.Auth.Username, opts.TLS)
		}
	}
}

// The password is a secret: from WAKEPUSH_CLICKHOUSE_PASSWORD or the file
// WAKEPUSH_CLICKHOUSE_PASSWORD_FILE names, never a flag.
func TestRegister(t *testing.T) {
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, env, file string
		args            []string
		want            string
		wantErr         string
	}{
		{name: "environment", env: "from-env", want: "from-env"},
		{name: "file", file: file, want: "from-file"},
		{name: "flag", args: []string{"-clickhouse-password=x"}, wantErr: "not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WAKEPUSH_CLICKHOUSE_PASSWORD", tc.env)
			t.Setenv("WAKEPUSH_CLICKHOUSE_PASSWORD_FILE", tc.file)
			t.Setenv("WAKEPUSH_CLICKHOUSE_TLS", "true")
			var c clickhousex.Config
			s := config.New("test")
			c.Register(s)
			err := s.Parse(append([]string{"-clickhouse-user", "recorder", "-clickhouse-tls-server-name", "ch.test"}, tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Password != tc.want || c.User != "recorder" || !c.TLS || c.ServerName != "ch.test" {
				t.Fatalf("settings %+v", c)
			}
		})
	}
}
