package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// `wakepushctl queries` lists every query with each of its parameters, type and default.
func TestListQueries(t *testing.T) {
	var buf bytes.Buffer
	if err := listQueries(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, name := range chschema.Queries() {
		q, err := chschema.LoadQuery(name)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`(?m)^` + name + `\s+` + regexp.QuoteMeta(q.Summary) + `$`).MatchString(out) {
			t.Errorf("no line for %s with its summary in:\n%s", name, out)
		}
		for _, p := range q.Params {
			line := `(?m)^  ` + p.Name + `\s+` + regexp.QuoteMeta(p.Type+" = "+p.Default) + `\s+` + regexp.QuoteMeta(p.Doc) + `$`
			if !regexp.MustCompile(line).MatchString(out) {
				t.Errorf("query %s: no line for parameter %s (%s = %s) in:\n%s", name, p.Name, p.Type, p.Default, out)
			}
		}
	}
}

// statsFixture writes, into a freshly migrated database, a small history 30 minutes ago whose
// stats are worked out by hand (see TestStats):
//
//	e1 d1 im.monal/APNS a.example  +0      w1 +100 (lists e1): x1 RETRY 503 +150, x2 ACCEPTED +300, receipt +1300
//	e2 d1 im.monal/APNS b.example  +2000   w2 +12000 (lists none; next wake of d1): x3 ACCEPTED +12500
//	e3 d1 im.monal/APNS a.example  +3000   w2 as well
//	e4 d2 im.monal/APNS b.example  +5000   no wake at all: uncovered
//	e5 d3 eu.siacs/FCM  a.example  +0      w3 +50 (lists e5): x4 PERMANENT 400 BadDeviceToken
//	e6 d4 im.monal/APNS a.example  +1000   w4 +30000 (lists e6), 29 s later: uncovered (late); x5 ACCEPTED +30200
func statsFixture(t *testing.T) (dsn string, base time.Time) {
	t.Helper()
	srv := stacktest.ClickHouse(t)
	db := fmt.Sprintf("wpctl_%d", time.Now().UnixNano()%1e9)
	conn, err := ch.Open(&ch.Options{Addr: []string{srv.TCPAddr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" SYNC")
		conn.Close()
	})
	ctx := t.Context()
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	base = time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	batch := func(query string, rows ...[]any) {
		t.Helper()
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+query)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := b.Append(r...); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
	batch("events (id, accepted_at, device_id, app, platform, source, sender)",
		[]any{"e1", at(0), "d1", "im.monal", "APNS", "XMPP_COMPONENT", "a.example"},
		[]any{"e2", at(2000), "d1", "im.monal", "APNS", "XMPP_COMPONENT", "b.example"},
		[]any{"e3", at(3000), "d1", "im.monal", "APNS", "XMPP_COMPONENT", "a.example"},
		[]any{"e4", at(5000), "d2", "im.monal", "APNS", "XMPP_COMPONENT", "b.example"},
		[]any{"e5", at(0), "d3", "eu.siacs", "FCM", "HTTP", "a.example"},
		[]any{"e6", at(1000), "d4", "im.monal", "APNS", "XMPP_COMPONENT", "a.example"},
	)
	batch("wakes (id, created_at, device_id, app, platform, reason, event_count, event_ids, first_event_at)",
		[]any{"w1", at(100), "d1", "im.monal", "APNS", "LEADING", uint32(1), []string{"e1"}, at(0)},
		[]any{"w2", at(12000), "d1", "im.monal", "APNS", "TRAILING", uint32(2), []string{}, at(2000)},
		[]any{"w3", at(50), "d3", "eu.siacs", "FCM", "LEADING", uint32(1), []string{"e5"}, at(0)},
		[]any{"w4", at(30000), "d4", "im.monal", "APNS", "LEADING", uint32(1), []string{"e6"}, at(1000)},
	)
	batch("deliveries (id, created_at, wake_id, device_id, app, platform, outcome, status_code, reason, provider_latency_ms, wake_created_at)",
		[]any{"x1", at(150), "w1", "d1", "im.monal", "APNS", "RETRY", uint16(503), "ServiceUnavailable", 20.0, at(100)},
		[]any{"x2", at(300), "w1", "d1", "im.monal", "APNS", "ACCEPTED", uint16(200), "", 10.0, at(100)},
		[]any{"x3", at(12500), "w2", "d1", "im.monal", "APNS", "ACCEPTED", uint16(200), "", 12.0, at(12000)},
		[]any{"x4", at(60), "w3", "d3", "eu.siacs", "FCM", "PERMANENT", uint16(400), "BadDeviceToken", 30.0, at(50)},
		[]any{"x5", at(30200), "w4", "d4", "im.monal", "APNS", "ACCEPTED", uint16(200), "", 14.0, at(30000)},
	)
	batch("receipts (id, created_at, wake_id, device_id, app)",
		[]any{"c1", at(1300), "w1", "d1", "im.monal"},
	)
	return srv.DSN(db), base
}

// Every shipped query runs with no parameters at all against data of the last hour, and finds it.
func TestQueriesRunWithDefaults(t *testing.T) {
	start := time.Now()
	dsn, _ := statsFixture(t)
	t.Logf("fixture: %v", time.Since(start))
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", dsn)
	ctx := t.Context()
	for _, name := range chschema.Queries() {
		var buf bytes.Buffer
		start := time.Now()
		err := runQueryTo(ctx, &buf, []string{name})
		t.Logf("query %s: %v", name, time.Since(start))
		if err != nil {
			t.Errorf("wakepushctl query %s: %v", name, err)
			continue
		}
		if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) < 2 {
			t.Errorf("wakepushctl query %s: no rows:\n%s", name, buf.String())
		}
	}
	// The usage example, and what slack changes: e6's wake came 29 s after it.
	for slack, want := range map[string][]string{"5s": {"e6", "e4"}, "30s": {"e4"}} {
		var buf bytes.Buffer
		if err := runQueryTo(ctx, &buf, []string{"uncovered_events", "slack=" + slack}); err != nil {
			t.Fatalf("query uncovered_events slack=%s: %v", slack, err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n")[1:] {
			got = append(got, strings.Fields(line)[0])
		}
		if !slices.Equal(got, want) {
			t.Errorf("uncovered_events slack=%s: events %v, want %v\n%s", slack, got, want, buf.String())
		}
	}
	for _, args := range [][]string{{"uncovered_events", "slackk=5s"}, {"latency_quantiles", "from=yesterday"}} {
		err := runQueryTo(ctx, &bytes.Buffer{}, args)
		if !errors.Is(err, chschema.ErrParam) {
			t.Errorf("query %v: err = %v, want a parameter error", args, err)
		}
	}
}

func TestStats(t *testing.T) {
	dsn, base := statsFixture(t)
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", dsn)
	ctx := t.Context()
	window := []string{"-since", base.Add(-time.Minute).Format(time.RFC3339), "-until", base.Add(time.Minute).Format(time.RFC3339)}
	stats := func(args ...string) string {
		t.Helper()
		var buf bytes.Buffer
		if err := statsTo(ctx, &buf, args); err != nil {
			t.Fatalf("stats %v: %v", args, err)
		}
		return buf.String()
	}

	var rep statsReport
	if err := json.Unmarshal([]byte(stats(append(window, "-format", "json")...)), &rep); err != nil {
		t.Fatal(err)
	}
	type counts struct {
		level, app, platform, sender                            string
		events, wakes, delivered, uncovered, pending, receipted uint64
	}
	var got []counts
	for _, g := range rep.Groups {
		got = append(got, counts{g.Level, g.App, g.Platform, g.Sender, g.Events, g.Wakes, g.Delivered, g.Uncovered, g.Pending, g.Receipted})
	}
	want := []counts{
		{"total", "", "", "", 6, 4, 4, 2, 0, 1},
		{"app", "eu.siacs", "FCM", "", 1, 1, 0, 0, 0, 0},
		{"server", "eu.siacs", "FCM", "a.example", 1, 1, 0, 0, 0, 0},
		{"app", "im.monal", "APNS", "", 5, 3, 4, 2, 0, 1},
		{"server", "im.monal", "APNS", "a.example", 3, 3, 3, 1, 0, 1},
		{"server", "im.monal", "APNS", "b.example", 2, 1, 1, 1, 0, 0},
	}
	if !slices.Equal(got, want) {
		t.Errorf("stats groups:\n got %+v\nwant %+v", got, want)
	}
	total := rep.Groups[0]
	if total.WakesPerEvent != 0.6667 || total.DeliveredShare != 0.6667 {
		t.Errorf("total wakes/event %v, delivered share %v; want 0.6667 each", total.WakesPerEvent, total.DeliveredShare)
	}
	// Per event: publish→wake 100, 10000, 9000, 50, 29000; wake→provider 200, 500, 500, 200;
	// provider→receipt 1000 (quantiles interpolate between ranks).
	lat := total.LatencyMS
	checkQ := func(stage string, p50, lo, hi float64) {
		t.Helper()
		q := lat[stage]
		if q.P50 == nil || q.P90 == nil || q.P99 == nil || *q.P50 != p50 || *q.P90 < lo || *q.P99 > hi || *q.P90 > *q.P99 {
			t.Errorf("%s quantiles = %v %v %v; want p50 %v, p90/p99 in [%v, %v]", stage, deref(q.P50), deref(q.P90), deref(q.P99), p50, lo, hi)
		}
	}
	checkQ("publish_to_wake", 9000, 10000, 29000)
	checkQ("wake_to_provider", 350, 200, 500)
	checkQ("provider_to_receipt", 1000, 1000, 1000)
	if q := rep.Groups[1].LatencyMS["wake_to_provider"]; q.P50 != nil {
		t.Errorf("eu.siacs had no accepted delivery, wake→provider p50 = %v, want null", *q.P50)
	}
	type outcome struct {
		level, app, outcome, reason string
		deliveries                  uint64
		share                       float64
	}
	var gotO []outcome
	for _, o := range rep.Outcomes {
		gotO = append(gotO, outcome{o.Level, o.App, o.Outcome, o.Reason, o.Deliveries, o.Share})
	}
	wantO := []outcome{
		{"total", "", "ACCEPTED", "", 3, 0.6},
		{"total", "", "PERMANENT", "BadDeviceToken", 1, 0.2},
		{"total", "", "RETRY", "ServiceUnavailable", 1, 0.2},
		{"app", "eu.siacs", "PERMANENT", "BadDeviceToken", 1, 1},
		{"app", "im.monal", "ACCEPTED", "", 3, 0.75},
		{"app", "im.monal", "RETRY", "ServiceUnavailable", 1, 0.25},
	}
	if !slices.Equal(gotO, wantO) {
		t.Errorf("stats outcomes:\n got %+v\nwant %+v", gotO, wantO)
	}

	// -app keeps one app.
	if err := json.Unmarshal([]byte(stats(append(window, "-format", "json", "-app", "eu.siacs")...)), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Groups) != 3 || rep.Groups[0].Events != 1 || len(rep.Outcomes) != 2 || rep.Outcomes[0].Outcome != "PERMANENT" {
		t.Errorf("-app eu.siacs: %+v", rep)
	}

	// Table: the same numbers, readable.
	table := stats(window...)
	for _, re := range []string{
		`(?m)^wakepush stats .* UTC \(all apps\)$`,
		`(?m)^total\s+6\s+4\s+0\.667\s+66\.7 %\s+2\s+0\s+1$`,
		`(?m)^im\.monal APNS\s+5\s+3\s+0\.600\s+80\.0 %\s+2\s+0\s+1$`,
		`(?m)^  b\.example\s+2\s+1\s+0\.500\s+50\.0 %\s+1\s+0\s+0$`,
		`(?m)^latency ms\s+publish→wake p50\s+p90\s+p99\s+wake→provider p50\s+p90\s+p99\s+provider→receipt p50\s+p90\s+p99$`,
		`(?m)^total\s+9000\s+\d+\s+\d+\s+350\s+\d+\s+\d+\s+1000\s+1000\s+1000$`,
		`(?m)^eu\.siacs FCM\s+50\.0\s+50\.0\s+50\.0\s+-\s+-\s+-\s+-\s+-\s+-$`,
		`(?m)^total\s+ACCEPTED\s+-\s+3\s+60\.0 %\s+3\s+200\s+12\.0\s+14\.0$`,
		`(?m)^im\.monal APNS\s+RETRY\s+ServiceUnavailable\s+1\s+25\.0 %\s+1\s+503\s+20\.0\s+20\.0$`,
	} {
		if !regexp.MustCompile(re).MatchString(table) {
			t.Errorf("table output does not match %s:\n%s", re, table)
		}
	}

	// CSV: one row per group and metric.
	records, err := csv.NewReader(strings.NewReader(stats(append(window, "-format", "csv")...))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(records[0], []string{"section", "level", "app", "platform", "sender", "outcome", "reason", "metric", "value"}) {
		t.Errorf("csv header = %v", records[0])
	}
	found := map[string]string{}
	for _, r := range records[1:] {
		found[strings.Join(r[:8], "|")] = r[8]
	}
	for key, want := range map[string]string{
		"summary|total||||||events":                                         "6",
		"summary|server|im.monal|APNS|a.example|||uncovered":                "1",
		"summary|total||||||publish_to_wake_p50_ms":                         "9000",
		"summary|app|eu.siacs|FCM||||wake_to_provider_p50_ms":               "",
		"outcomes|total||||PERMANENT|BadDeviceToken|deliveries":             "1",
		"outcomes|app|im.monal|APNS||ACCEPTED||share":                       "0.75",
		"outcomes|app|im.monal|APNS||RETRY|ServiceUnavailable|status_codes": "503",
	} {
		if v, ok := found[key]; !ok || v != want {
			t.Errorf("csv %s = %q (present %v), want %q", key, v, ok, want)
		}
	}

	// No flags at all: the last hour, all apps (the fixture is 30 minutes old).
	if out := stats(); !regexp.MustCompile(`(?m)^total\s+6\s+4\s`).MatchString(out) {
		t.Errorf("stats with defaults:\n%s", out)
	}
	// Bad flags.
	for _, args := range [][]string{{"-format", "xml"}, {"-since", "yesterday"}, {"-since", "now", "-until", "1h"}} {
		if err := statsTo(ctx, &bytes.Buffer{}, args); err == nil {
			t.Errorf("stats %v succeeded", args)
		}
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}
