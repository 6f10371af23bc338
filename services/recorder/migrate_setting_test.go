package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	schema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
)

// WAKEPUSH_CLICKHOUSE_MIGRATE defaults to true and parses false.
func TestClickHouseMigrateSetting(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want bool
	}{{"", true}, {"false", false}} {
		t.Setenv("WAKEPUSH_CLICKHOUSE_MIGRATE", tt.env)
		c, err := loadSettings(nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Migrate != tt.want {
			t.Errorf("WAKEPUSH_CLICKHOUSE_MIGRATE=%q: Migrate %v, want %v", tt.env, c.Migrate, tt.want)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Without migrate the recorder runs no DDL: openStore waits, logging what is missing, until
// another (wakepushctl migrate) has applied every migration, then opens the store.
func TestOpenStoreWaitsForSchema(t *testing.T) {
	srv := stacktest.ClickHouse(t)
	db, conn := testDatabase(t, srv, "rec_wait")
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := openStore(ctx, srv.DSN(db), clickhousex.Config{}, false, log)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("openStore returned before the schema exists: %v", err)
	case <-time.After(time.Second):
	}
	if exists := databaseExists(t, conn, db); exists {
		t.Fatal("openStore without migrate created the database")
	}
	if !strings.Contains(logs.String(), "waiting for the ClickHouse schema") {
		t.Errorf("no log of the wait:\n%s", logs.String())
	}
	if err := schema.Migrate(t.Context(), conn, db); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("openStore still waiting after the migrations were applied")
	}
}

// The wait is bounded by the context, and the error names the migrations not applied.
func TestOpenStoreSchemaNotMigrated(t *testing.T) {
	srv := stacktest.ClickHouse(t)
	db, conn := testDatabase(t, srv, "rec_partial")
	if err := schema.Migrate(t.Context(), conn, db); err != nil {
		t.Fatal(err)
	}
	latest, err := schema.Latest()
	if err != nil {
		t.Fatal(err)
	}
	// Forget the latest migration, as if this recorder were newer than the applied schema.
	if err := conn.Exec(t.Context(), "ALTER TABLE "+db+".schema_migrations DELETE WHERE version = ? SETTINGS mutations_sync = 1", latest.Version); err != nil {
		t.Fatal(err)
	}
	// Long enough for a first read of schema_migrations on a loaded machine (CI once took over
	// 1.5 s for it, and the error then could only say the read was cut short).
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	_, err = openStore(ctx, srv.DSN(db), clickhousex.Config{}, false, discardLogger())
	for _, want := range []string{"migrations not applied: " + latest.String(), "wakepushctl migrate", "deadline exceeded"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v: want %q in it", err, want)
		}
	}
}

func databaseExists(t *testing.T, conn driver.Conn, db string) bool {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(t.Context(), "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}
