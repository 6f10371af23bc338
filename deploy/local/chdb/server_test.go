package chdb_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/deploy/local/chdb"
)

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startServer(t *testing.T, ctx context.Context, dataDir string) *chdb.Server {
	t.Helper()
	began := time.Now()
	s, err := chdb.Start(ctx, chdb.StartOptions{DataDir: dataDir, Output: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ClickHouse ready in %s (tcp %s, http %s)", time.Since(began).Round(time.Millisecond), s.TCPAddr, s.HTTPAddr)
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func open(t *testing.T, s *chdb.Server) clickhouse.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.TCPAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestServer starts a real ClickHouse, queries it over the native protocol,
// and checks that MergeTree data survives a restart on the same data dir.
func TestServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "clickhouse")

	s := startServer(t, ctx, dataDir)
	conn := open(t, s)
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("SELECT version(): %v", err)
	}
	t.Logf("ClickHouse version %s", version)
	if !strings.HasPrefix(version, "26.") {
		t.Errorf("version %q, want 26.x", version)
	}

	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS t",
		"CREATE TABLE t.events (id UInt64, name LowCardinality(String), at DateTime64(3)) ENGINE = MergeTree ORDER BY id",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO t.events")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 1000 {
		if err := batch.Append(uint64(i), "wake", now); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}

	s2 := startServer(t, ctx, dataDir)
	var n uint64
	if err := open(t, s2).QueryRow(ctx, "SELECT count() FROM t.events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1000 {
		t.Fatalf("after restart: %d rows, want 1000", n)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	notExec := filepath.Join(t.TempDir(), "chdb-server")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho 'cannot start' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    chdb.StartOptions
		wantErr string
	}{
		{name: "no data dir", opts: chdb.StartOptions{}, wantErr: "DataDir is required"},
		{name: "binary exits", opts: chdb.StartOptions{Binary: notExec, Library: "/nonexistent.so", DataDir: t.TempDir()},
			wantErr: "cannot start"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := chdb.Start(ctx, tc.opts)
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}
