package clickhousex_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/wakepush/wakepush/schemas/clickhouse"
)

// TestMigrationsUpgradeExistingTables applies 0001 and 0002 alone, writes rows the way the
// recorder wrote them before 0003, then migrates to the latest schema: the new columns are empty
// on the old rows, new rows can set them, the new rollups exist, and every statement of every
// migration can be run once more (a migration interrupted half way is simply run again).
func TestMigrationsUpgradeExistingTables(t *testing.T) {
	t.Parallel()
	conn, db := connect(t)
	ctx := t.Context()
	all, err := clickhouse.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	for _, m := range all[:2] {
		for _, stmt := range m.Statements(db) {
			if err := conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%04d_%s: %v", m.Version, m.Name, err)
			}
		}
	}
	now := time.Now().UTC().Format(clickhouse.TimeLayout)
	for _, stmt := range []string{
		`INSERT INTO ` + db + `.events (id, accepted_at, device_id, app) VALUES ('old', '` + now + `', 'd', 'a')`,
		`INSERT INTO ` + db + `.registrations (id, created_at, device_id, app) VALUES ('old', '` + now + `', 'd', 'a')`,
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	// schema_migrations says 1 and 2 are applied (the layout Migrate creates).
	if err := conn.Exec(ctx, "CREATE TABLE "+db+".schema_migrations (version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY version"); err != nil {
		t.Fatal(err)
	}
	for _, m := range all[:2] {
		if err := conn.Exec(ctx, "INSERT INTO "+db+".schema_migrations VALUES (?, ?, ?, now64(3))", m.Version, m.Name, m.Checksum); err != nil {
			t.Fatal(err)
		}
	}
	if err := clickhouse.Migrate(ctx, conn, db); err != nil {
		t.Fatalf("Migrate over a 0002 schema with rows: %v", err)
	}
	var traceID, spanID, regID string
	if err := conn.QueryRow(ctx, "SELECT trace_id, span_id FROM "+db+".events WHERE id = 'old'").Scan(&traceID, &spanID); err != nil {
		t.Fatal(err)
	}
	if traceID != "" || spanID != "" {
		t.Errorf("old events row: trace_id %q span_id %q, want empty", traceID, spanID)
	}
	if err := conn.QueryRow(ctx, "SELECT registration_id FROM "+db+".registrations WHERE id = 'old'").Scan(&regID); err != nil {
		t.Fatal(err)
	}
	if regID != "" {
		t.Errorf("old registrations row: registration_id %q, want empty", regID)
	}
	for _, table := range []string{"events", "wakes", "deliveries", "receipts", "dead_letters"} {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name IN ('trace_id', 'span_id')", db, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("%s has %d of the columns trace_id, span_id", table, n)
		}
		var idx string
		if err := conn.QueryRow(ctx, "SELECT type FROM system.data_skipping_indices WHERE database = ? AND table = ? AND name = 'trace_id_idx'", db, table).Scan(&idx); err != nil || idx != "bloom_filter" {
			t.Errorf("%s: trace_id_idx type %q, err %v; want bloom_filter", table, idx, err)
		}
	}
	for _, table := range []string{"events_1m", "deliveries_1m", "dead_letters_1m", "wake_latency_1m"} {
		var engine string
		if err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&engine); err != nil || engine != "AggregatingMergeTree" {
			t.Errorf("table %s: engine %q, err %v", table, engine, err)
		}
	}
	// Every statement again, as after a failure half way through.
	for _, m := range all {
		for i, stmt := range m.Statements(db) {
			if err := conn.Exec(ctx, stmt); err != nil {
				t.Errorf("%04d_%s statement %d run again: %v", m.Version, m.Name, i+1, err)
			}
		}
	}
}

// TestRollupsAgreeWithRawTables inserts records into the raw tables in several blocks (as the
// recorder's batches do), spread over several minutes and keys, and checks that each rollup
// holds the same counts per minute and key as the raw tables, and quantiles within TDigest's
// tolerance of the exact ones.
func TestRollupsAgreeWithRawTables(t *testing.T) {
	t.Parallel()
	conn, db := connect(t)
	ctx := t.Context()
	if err := clickhouse.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)
	apps := []string{"im.monal", "eu.siacs.conversations"}
	platforms := []string{"APNS", "FCM"}
	senders := []string{"example.com", "jabber.org", "xmpp.example.net"}
	outcomes := []struct{ outcome, reason string }{{"ACCEPTED", ""}, {"RETRY", "TooManyRequests"}, {"PERMANENT", "Unregistered"}, {"DEAD_LETTERED", "attempts exhausted"}}
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	const blocks, perBlock = 6, 700
	for b := range blocks {
		ev, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events (id, accepted_at, device_id, app, platform, source, sender, urgent)")
		if err != nil {
			t.Fatal(err)
		}
		del, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".deliveries (id, created_at, wake_id, device_id, app, platform, outcome, reason, provider_latency_ms, wake_created_at)")
		if err != nil {
			t.Fatal(err)
		}
		dl, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".dead_letters (id, created_at, source_topic, stage, reason)")
		if err != nil {
			t.Fatal(err)
		}
		for i := range perBlock {
			id := fmt.Sprintf("%d-%d", b, i)
			at := base.Add(time.Duration(rng.IntN(20*60_000)) * time.Millisecond)
			source := "XMPP_COMPONENT"
			if rng.IntN(5) == 0 {
				source = "HTTP"
			}
			if err := ev.Append("e"+id, at, "d"+id, pick(apps), pick(platforms), source, pick(senders), rng.IntN(10) == 0); err != nil {
				t.Fatal(err)
			}
			o := outcomes[rng.IntN(len(outcomes))]
			latency := 5 + rng.ExpFloat64()*40 // provider latency, ms
			wakeAt := at.Add(-time.Duration(50+rng.IntN(2000)) * time.Millisecond)
			if o.outcome == "DEAD_LETTERED" {
				latency, wakeAt = 0, time.Unix(0, 0) // no provider call, no wake time: not in the quantiles
			}
			if err := del.Append("x"+id, at, "w"+id, "d"+id, pick(apps), pick(platforms), o.outcome, o.reason, latency, wakeAt); err != nil {
				t.Fatal(err)
			}
			if i%7 == 0 {
				stage, topic := "sender", "push.wakes"
				if rng.IntN(2) == 0 {
					stage, topic = "coalescer", "push.events"
				}
				if err := dl.Append("l"+id, at, topic, stage, "r"); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, batch := range []driver.Batch{ev, del, dl} {
			if err := batch.Send(); err != nil {
				t.Fatal(err)
			}
		}
	}

	agree := func(t *testing.T, what, rollup, raw string) {
		t.Helper()
		got, want := rowsAsStrings(t, conn, rollup), rowsAsStrings(t, conn, raw)
		if len(want) < 10 {
			t.Fatalf("%s: only %d raw groups; the fixture should spread over more", what, len(want))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: rollup and raw table disagree\nrollup (%d rows): %.600q\nraw    (%d rows): %.600q", what, len(got), got, len(want), want)
		}
	}
	agree(t, "events_1m",
		"SELECT minute, app, platform, sender, source, sum(events), sum(urgent) FROM "+db+".events_1m GROUP BY ALL ORDER BY ALL",
		"SELECT toStartOfMinute(accepted_at) AS minute, app, platform, sender, source, count(), countIf(urgent) FROM "+db+".events FINAL GROUP BY ALL ORDER BY ALL")
	agree(t, "deliveries_1m counts",
		"SELECT minute, app, platform, outcome, reason, sum(deliveries) FROM "+db+".deliveries_1m GROUP BY ALL ORDER BY ALL",
		"SELECT toStartOfMinute(created_at) AS minute, app, platform, outcome, reason, count() FROM "+db+".deliveries FINAL GROUP BY ALL ORDER BY ALL")
	agree(t, "dead_letters_1m",
		"SELECT minute, stage, source_topic, sum(dead_letters) FROM "+db+".dead_letters_1m GROUP BY ALL ORDER BY ALL",
		"SELECT toStartOfMinute(created_at) AS minute, stage, source_topic, count() FROM "+db+".dead_letters FINAL GROUP BY ALL ORDER BY ALL")

	// Quantiles: per app and outcome over the whole range (enough values per group for
	// quantiles to be stable), rollup states merged versus exact quantiles of the raw rows.
	type q3 = []float64
	quantiles := func(query string) map[string][2]q3 {
		rows, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string][2]q3{}
		for rows.Next() {
			var app, outcome string
			var p, w q3
			if err := rows.Scan(&app, &outcome, &p, &w); err != nil {
				t.Fatal(err)
			}
			out[app+"/"+outcome] = [2]q3{p, w}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := quantiles("SELECT app, toString(outcome), quantilesTDigestMerge(0.5, 0.9, 0.99)(provider_latency_ms), quantilesTDigestMerge(0.5, 0.9, 0.99)(wake_to_provider_ms) FROM " + db + ".deliveries_1m WHERE outcome != 'DEAD_LETTERED' GROUP BY ALL")
	want := quantiles("SELECT app, toString(outcome), quantilesExactIf(0.5, 0.9, 0.99)(provider_latency_ms, provider_latency_ms > 0), quantilesExactIf(0.5, 0.9, 0.99)(toFloat64(dateDiff('millisecond', wake_created_at, created_at)), wake_created_at > toDateTime64(0, 3, 'UTC')) FROM " + db + ".deliveries FINAL WHERE outcome != 'DEAD_LETTERED' GROUP BY ALL")
	if len(want) != len(apps)*(len(outcomes)-1) {
		t.Fatalf("exact quantiles for %d groups, want %d", len(want), len(apps)*(len(outcomes)-1))
	}
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			t.Errorf("%s: no quantiles in deliveries_1m", key)
			continue
		}
		for s, stage := range []string{"provider_latency_ms", "wake_to_provider_ms"} {
			for i, level := range []string{"p50", "p90", "p99"} {
				// TDigest: within a few percent of the value's rank; p99 of ~600 values is
				// sparse, so allow 15 % (or 10 ms) there and 8 % below it.
				tol := 0.08
				if i == 2 {
					tol = 0.15
				}
				if diff := math.Abs(g[s][i] - w[s][i]); diff > max(tol*w[s][i], 10) {
					t.Errorf("%s %s %s: rollup %.1f, exact %.1f", key, stage, level, g[s][i], w[s][i])
				}
			}
		}
	}
	// DEAD_LETTERED records made no provider call and carry no wake time: they are counted but
	// stay out of the quantiles (which are then empty states: NaN).
	var dead uint64
	var p q3
	if err := conn.QueryRow(ctx, "SELECT sum(deliveries), quantilesTDigestMerge(0.5, 0.9, 0.99)(provider_latency_ms) FROM "+db+".deliveries_1m WHERE outcome = 'DEAD_LETTERED'").Scan(&dead, &p); err != nil {
		t.Fatal(err)
	}
	if dead == 0 || len(p) != 3 || !math.IsNaN(p[0]) {
		t.Errorf("DEAD_LETTERED: %d deliveries, provider latency quantiles %v; want some and NaN", dead, p)
	}

	// wake_latency_1m (0002) still agrees too.
	if err := conn.Exec(ctx, "INSERT INTO "+db+".wakes (id, created_at, device_id, app, platform, event_count, first_event_at) SELECT concat('w', toString(number)), toDateTime64('"+base.Format(clickhouse.TimeLayout)+"', 3, 'UTC') + toIntervalMillisecond(number * 997), 'd', 'a', 'APNS', 1 + number % 3, toDateTime64('"+base.Format(clickhouse.TimeLayout)+"', 3, 'UTC') + toIntervalMillisecond(number * 997 - 100 - number % 500) FROM numbers(2000)"); err != nil {
		t.Fatal(err)
	}
	agree(t, "wake_latency_1m",
		"SELECT minute, app, platform, sum(wakes), sum(events), max(max_latency_ms) FROM "+db+".wake_latency_1m GROUP BY ALL ORDER BY ALL",
		"SELECT toStartOfMinute(created_at) AS minute, app, platform, count(), sum(event_count), max(toFloat64(dateDiff('millisecond', first_event_at, created_at))) FROM "+db+".wakes FINAL GROUP BY ALL ORDER BY ALL")
}

// rowsAsStrings runs query and returns each row as a string.
func rowsAsStrings(t *testing.T, conn driver.Conn, query string) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), "SELECT toString(tuple(*)) FROM ("+query+")")
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
