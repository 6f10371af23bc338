package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/scenario"
	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
)

// TestTimelines: an uncovered event's timeline lists its device's events, wakes, delivery
// attempts and mock arrivals around it, in time order, and nothing of other devices or from
// outside the window.
func TestTimelines(t *testing.T) {
	srv, db := stacktest.ClickHouseDatabase(t)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{srv.TCPAddr}, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := t.Context()
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 5, 22, 57, 20, 0, time.UTC)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	insert(t, ctx, conn, "events (id, accepted_at, device_id, app, platform, urgent)",
		[]any{"e0", at(-60000), "d1", "app", "FCM", false}, // long before: outside the window
		[]any{"e1", at(0), "d1", "app", "FCM", false},
		[]any{"e2", at(9763), "d1", "app", "FCM", false}, // the uncovered one
		[]any{"e3", at(9800), "d2", "app", "FCM", false}, // another device
	)
	insert(t, ctx, conn, "wakes (id, created_at, device_id, app, platform, reason, event_count, first_event_at, last_event_at)",
		[]any{"w1", at(5), "d1", "app", "FCM", "LEADING", uint32(1), at(0), at(0)},
		[]any{"w2", at(10010), "d1", "app", "FCM", "TRAILING", uint32(1), at(9763), at(9763)},
	)
	insert(t, ctx, conn, "deliveries (id, created_at, wake_id, device_id, app, platform, outcome, attempt, status_code, reason, provider_latency_ms)",
		[]any{"x1", at(20), "w1", "d1", "app", "FCM", "ACCEPTED", uint32(1), uint16(200), "", 4.0},
		[]any{"x2", at(10030), "w2", "d1", "app", "FCM", "RETRY", uint32(1), uint16(503), "UNAVAILABLE", 7.0},
		[]any{"x3", at(16900), "w2", "d1", "app", "FCM", "ACCEPTED", uint32(2), uint16(200), "", 5.0},
		[]any{"x4", at(9900), "w9", "d2", "app", "FCM", "ACCEPTED", uint32(1), uint16(200), "", 5.0},
	)

	st := &stack{chTCP: srv.TCPAddr, database: db}
	sc := &scenario.Scenario{}
	sc.Slack = scenario.Duration(5 * time.Second)
	regs := []registration{{DeviceID: "d0"}, {DeviceID: "d1"}}
	events := []analysis.Event{
		{Device: 1, Sent: at(-1), Answered: at(0), Accepted: true, Interval: 10 * time.Second},
		{Device: 1, Sent: at(9760), Answered: at(9765), Accepted: true, Interval: 10 * time.Second},
	}
	arrivals := map[int32][]analysis.Arrival{1: {{At: at(18), WakeID: "w1"}, {At: at(16895), WakeID: "w2"}}}
	lines, err := timelines(ctx, st, sc, regs, events, []int{1}, arrivals)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lines, "\n")
	t.Logf("timeline:\n%s", got)
	want := []string{
		"device 1, uncovered event sent 22:57:29.760 (min_interval 10s):",
		"  22:57:20.000  event e1 accepted (urgent=false)",
		"  22:57:20.005  wake w1 created (LEADING, 1 events accepted 22:57:20.000–22:57:20.000)",
		"  22:57:20.018  mock received wake w1",
		"  22:57:20.020  delivery of wake w1 recorded: attempt 1 ACCEPTED (status 200, provider answered in 4 ms)",
		"  22:57:29.760  load test sent the uncovered event",
		"  22:57:29.763  event e2 accepted (urgent=false)",
		"  22:57:29.765  … and got its answer",
		"  22:57:30.010  wake w2 created (TRAILING, 1 events accepted 22:57:29.763–22:57:29.763)",
		"  22:57:30.030  delivery of wake w2 recorded: attempt 1 RETRY (status 503 UNAVAILABLE, provider answered in 7 ms)",
		"  22:57:36.895  mock received wake w2",
		"  22:57:36.900  delivery of wake w2 recorded: attempt 2 ACCEPTED (status 200, provider answered in 5 ms)",
	}
	if got != strings.Join(want, "\n") {
		t.Errorf("want:\n%s", strings.Join(want, "\n"))
	}
}

func insert(t *testing.T, ctx context.Context, conn clickhouse.Conn, into string, rows ...[]any) {
	t.Helper()
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+into)
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
