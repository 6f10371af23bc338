package chdb_test

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/testcert"
)

// TestUsersAndTLS: a server with a password user and TLS accepts that user with its password
// (and the passwordless default user, as before), serves the native protocol over TLS to a
// client that trusts the CA only, and refuses a wrong password. That case comes last: libchdb
// 26.7 aborts after refusing a native-protocol login (see security.go).
func TestUsersAndTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ca := testcert.NewCA(t)
	s, err := chdb.Start(ctx, chdb.StartOptions{
		DataDir: filepath.Join(t.TempDir(), "clickhouse"),
		Output:  testWriter{t},
		Users:   []chdb.User{{Name: "recorder", Password: "s3cret"}},
		TLS:     &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").TLS}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	if s.SecureTCPAddr == "" {
		t.Fatal("no SecureTCPAddr")
	}
	tests := []struct {
		name     string
		addr     string
		user     string
		password string
		tls      *tls.Config
		wantUser string // "" = refused
		wantErr  string
	}{
		{"default user", s.TCPAddr, "", "", nil, "default", ""},
		{"password user", s.TCPAddr, "recorder", "s3cret", nil, "recorder", ""},
		{"tls", s.SecureTCPAddr, "recorder", "s3cret", &tls.Config{RootCAs: ca.Pool()}, "recorder", ""},
		{"tls untrusted", s.SecureTCPAddr, "recorder", "s3cret", &tls.Config{}, "", "certificate"},
		{"wrong password", s.TCPAddr, "recorder", "wrong", nil, "", "Authentication failed"}, // last
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{tc.addr}, TLS: tc.tls, DialTimeout: 5 * time.Second,
				Auth: clickhouse.Auth{Username: tc.user, Password: tc.password}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var user string
			err = conn.QueryRow(ctx, "SELECT currentUser()").Scan(&user)
			if tc.wantUser == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("query as %q: user %q, %v; want an error containing %q", tc.user, user, err, tc.wantErr)
				}
				return
			}
			if err != nil || user != tc.wantUser {
				t.Fatalf("currentUser() = %q, %v; want %q", user, err, tc.wantUser)
			}
		})
	}
}

func TestUserErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		users []chdb.User
		want  string
	}{
		{[]chdb.User{{Name: "bad-name", Password: "x"}}, "user name"},
		{[]chdb.User{{Name: "u"}}, "needs a password"},
		{[]chdb.User{{Name: "default", Password: "x"}}, "listed twice"},
		{[]chdb.User{{Name: "u", Password: "x"}, {Name: "u", Password: "y"}}, "listed twice"},
	} {
		// Start fails on the users before it needs the library or the binary.
		_, err := chdb.Start(context.Background(), chdb.StartOptions{DataDir: t.TempDir(), Users: tc.users,
			Library: "/nonexistent.so", Binary: "/nonexistent"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("users %v: %v, want an error containing %q", tc.users, err, tc.want)
		}
	}
}
