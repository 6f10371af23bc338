// The ClickHouse integration tests of the schema package schemas/clickhouse (migrations, rollups,
// analyst queries: schema_migrate_test.go, schema_rollups_test.go) live here, in the services
// module, because they need the dev ClickHouse (deploy/local/stacktest): the schemas module
// requires no wakepush module, not even for a test. Its unit tests stay in schemas/clickhouse.

package clickhousex_test

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

// TestQueriesRun runs every analyst query against the migrated (empty and then non-empty)
// schema with no parameters at all, i.e. with the defaults its header declares: a query file
// that does not run, or whose defaults do not cover recent data, fails here.
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
	names := clickhouse.Queries()
	if len(names) < 5 {
		t.Fatalf("Queries() = %v", names)
	}
	run := func(t *testing.T, name string, now time.Time) int {
		t.Helper()
		q, err := clickhouse.LoadQuery(name)
		if err != nil {
			t.Fatal(err)
		}
		params, err := q.Bind(nil, now)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := qconn.Query(ch.Context(ctx, ch.WithParameters(params)), q.Text)
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
		return n
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, name := range names {
		run(t, name, now) // empty tables
	}
	// Data inside every query's default range (the last hour; uncovered_events ends a minute
	// ago): e1 is delivered (w1, x1) without a receipt; e2 (5 min ago) has no wake at all;
	// w2 has only a failed attempt.
	at := func(d time.Duration) string { return now.Add(d).Format(clickhouse.TimeLayout) }
	for _, stmt := range []string{
		`INSERT INTO ` + db + `.events (id, accepted_at, device_id, app, platform) VALUES ('e1', '` + at(-10*time.Minute) + `', 'd1', 'app', 'APNS'), ('e2', '` + at(-5*time.Minute) + `', 'd2', 'app', 'APNS')`,
		`INSERT INTO ` + db + `.wakes (id, created_at, device_id, app, platform, event_count, event_ids, first_event_at) VALUES ('w1', '` + at(-10*time.Minute+time.Second) + `', 'd1', 'app', 'APNS', 1, ['e1'], '` + at(-10*time.Minute) + `'), ('w2', '` + at(-9*time.Minute) + `', 'd1', 'app', 'APNS', 1, [], '` + at(-9*time.Minute) + `')`,
		`INSERT INTO ` + db + `.deliveries (id, created_at, wake_id, device_id, app, platform, outcome) VALUES ('x1', '` + at(-10*time.Minute+2*time.Second) + `', 'w1', 'd1', 'app', 'APNS', 'ACCEPTED'), ('x2', '` + at(-9*time.Minute+time.Second) + `', 'w2', 'd1', 'app', 'APNS', 'PERMANENT')`,
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if n := run(t, name, now); n == 0 {
				t.Errorf("%s with its defaults found no rows in data of the last 10 minutes", name)
			}
		})
	}
}
