package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/schemas/clickhouse"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

var dbSeq atomic.Int64

// connect returns a connection to the shared test ClickHouse (no default database) and a fresh
// database name for the test.
func connect(t *testing.T) (driver.Conn, string) {
	t.Helper()
	srv := stacktest.ClickHouse(t)
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.TCPAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	db := fmt.Sprintf("wp_%s_%d", strings.ToLower(regexp.MustCompile(`\W`).ReplaceAllString(t.Name(), "_")), dbSeq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC")
	})
	return conn, db
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	conn, db := connect(t)
	ctx := t.Context()
	for i := range 2 {
		if err := clickhouse.Migrate(ctx, conn, db); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	applied, err := clickhouse.AppliedMigrations(ctx, conn, db)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := clickhouse.Migrations()
	if len(applied) != len(all) {
		t.Errorf("applied %d migrations, want %d", len(applied), len(all))
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != uint64(len(all)) {
		t.Errorf("schema_migrations has %d rows after two runs, want %d (second run must not re-apply)", n, len(all))
	}
	for _, table := range []string{"events", "registrations", "wakes", "deliveries", "receipts", "dead_letters", "wake_latency_1m"} {
		var engine string
		if err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&engine); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
	// Privacy: no column of registrations can hold a token.
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = 'registrations'", db)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var col string
		if err := rows.Scan(&col); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(col, "token") && col != "has_token" {
			t.Errorf("registrations has column %q: tokens must not be stored", col)
		}
	}
}

func TestMigrateDetectsChangedMigration(t *testing.T) {
	t.Parallel()
	conn, db := connect(t)
	ctx := t.Context()
	if err := clickhouse.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	// Pretend migration 1 was applied from a different file.
	if err := conn.Exec(ctx, "TRUNCATE TABLE "+db+".schema_migrations"); err != nil {
		t.Fatal(err)
	}
	all, _ := clickhouse.Migrations()
	for _, m := range all {
		sum := m.Checksum
		if m.Version == 1 {
			sum = strings.Repeat("0", 64)
		}
		if err := conn.Exec(ctx, "INSERT INTO "+db+".schema_migrations VALUES (?, ?, ?, now64(3))", m.Version, m.Name, sum); err != nil {
			t.Fatal(err)
		}
	}
	err := clickhouse.Migrate(ctx, conn, db)
	if !errors.Is(err, clickhouse.ErrChecksum) {
		t.Fatalf("Migrate after a change: err = %v, want ErrChecksum", err)
	}
}

var paramRE = regexp.MustCompile(`\{(\w+):([^}]+)\}`)

// TestQueriesRun runs every analyst query against the migrated (empty and then non-empty)
// schema with parameters of the declared types: a query file that does not run fails here.
func TestQueriesRun(t *testing.T) {
	t.Parallel()
	conn, db := connect(t)
	ctx := t.Context()
	if err := clickhouse.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	srv := stacktest.ClickHouse(t)
	qconn, err := ch.Open(&ch.Options{Addr: []string{srv.TCPAddr}, Auth: ch.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer qconn.Close()
	// A little data so joins and aggregates see rows.
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, stmt := range []string{
		fmt.Sprintf(`INSERT INTO %s.events (id, accepted_at, device_id, app, platform) VALUES ('e1', '%s', 'd1', 'app', 'APNS')`, db, now.Format("2006-01-02 15:04:05.000")),
		fmt.Sprintf(`INSERT INTO %s.wakes (id, created_at, device_id, app, platform, event_count, event_ids, first_event_at) VALUES ('w1', '%s', 'd1', 'app', 'APNS', 1, ['e1'], '%s')`, db, now.Add(time.Second).Format("2006-01-02 15:04:05.000"), now.Format("2006-01-02 15:04:05.000")),
		fmt.Sprintf(`INSERT INTO %s.deliveries (id, created_at, wake_id, device_id, app, platform, outcome) VALUES ('x1', '%s', 'w1', 'd1', 'app', 'APNS', 'ACCEPTED')`, db, now.Add(2*time.Second).Format("2006-01-02 15:04:05.000")),
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	names := clickhouse.Queries()
	if len(names) < 2 {
		t.Fatalf("Queries() = %v", names)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			q, err := clickhouse.Query(name)
			if err != nil {
				t.Fatal(err)
			}
			params := ch.Parameters{}
			for _, m := range paramRE.FindAllStringSubmatch(q, -1) {
				params[m[1]] = sampleParam(t, m[1], m[2], now)
			}
			rows, err := qconn.Query(ch.Context(ctx, ch.WithParameters(params)), q)
			if err != nil {
				t.Fatalf("query %s: %v", name, err)
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("query %s: %v", name, err)
			}
			t.Logf("%s: %d row(s) with %v", name, n, params)
		})
	}
}

func sampleParam(t *testing.T, name, typ string, now time.Time) string {
	switch {
	case strings.HasPrefix(typ, "DateTime"):
		ts := now.Add(-time.Hour)
		if name == "to" {
			ts = now.Add(time.Hour)
		}
		return ts.Format("2006-01-02 15:04:05.000")
	case strings.HasPrefix(typ, "UInt"), strings.HasPrefix(typ, "Int"):
		return "1000"
	case typ == "String":
		return ""
	}
	t.Fatalf("parameter {%s:%s}: no sample value for that type; extend sampleParam", name, typ)
	return ""
}
