package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/proccpu"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
	schema "github.com/wakepush/wakepush/schemas/clickhouse"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

var dbSeq atomic.Int64

// testDatabase returns a fresh database name (dropped at the end) and a connection without a
// default database.
func testDatabase(t testing.TB, srv *chdb.Server, prefix string) (string, driver.Conn) {
	t.Helper()
	db := fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e6, dbSeq.Add(1))
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
	return db, conn
}

// fixture is one record of every type, shaped so the analyst queries have something to find:
// d1's events e1 (listed by wake w1) and e3 (not listed, covered by the next wake w2) are
// delivered; d2's event e2 has no wake at all; d3's event e4 gets its wake w3 only 6 s later.
// Records e1, w1, x1, c1 and l1 are created in sampled traces (fixtureTrace), the others in none.
type fixture struct {
	base    time.Time
	records []kafkax.Record
}

// fixtureTrace is the sampled trace id a fixture record with id is created in ("" for none).
func fixtureTrace(id string) string {
	if i := slices.Index([]string{"e1", "w1", "x1", "c1", "l1"}, id); i >= 0 {
		return fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02x", i+1)
	}
	return ""
}

// fixtureParentSpan is the span id of the remote parent of a traced fixture record.
const fixtureParentSpan = "0102030405060708"

func newFixture() fixture {
	base := time.Now().UTC().Truncate(time.Minute).Add(-10*time.Minute + 5*time.Second)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	apns := wakepushv1.Platform_PLATFORM_APNS
	ev := func(id, dev string, ms int) *wakepushv1.PushEvent {
		return &wakepushv1.PushEvent{Id: id, AcceptedAt: tsp(at(ms)), DeviceId: dev, App: "im.monal", Platform: apns,
			Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: "example.com", Node: "node-" + dev, Important: true, MessageCount: 2}
	}
	wake := func(id, dev string, ms int, reason wakepushv1.WakeReason, firstMS int, ids ...string) *wakepushv1.Wake {
		return &wakepushv1.Wake{Id: id, CreatedAt: tsp(at(ms)), DeviceId: dev, App: "im.monal", Platform: apns, Reason: reason,
			EventCount: uint32(max(len(ids), 1)), EventIds: ids, FirstEventAt: tsp(at(firstMS)), LastEventAt: tsp(at(firstMS))}
	}
	del := func(id, wakeID, dev string, ms int, outcome wakepushv1.DeliveryOutcome, status uint32) *wakepushv1.Delivery {
		return &wakepushv1.Delivery{Id: id, CreatedAt: tsp(at(ms)), WakeId: wakeID, DeviceId: dev, App: "im.monal", Platform: apns,
			Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION, Outcome: outcome, Attempt: 1, StatusCode: status,
			ProviderMessageId: "apns-" + id, ProviderLatency: durationpb.New(25 * time.Millisecond), WakeCreatedAt: tsp(at(100))}
	}
	recs := []struct {
		topic, key string
		msg        proto.Message
	}{
		{topics.Registrations, "d1/reg-1", &wakepushv1.Registration{Id: "r1", CreatedAt: tsp(at(-3600_000)), DeviceId: "d1", RegistrationId: "reg-1", App: "im.monal", Platform: apns,
			Environment: wakepushv1.Environment_ENVIRONMENT_SANDBOX, Token: "SECRET-TOKEN-d1", State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
			Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API, RegisteredAt: tsp(at(-3600_000))}},
		{topics.Events, "d1", ev("e1", "d1", 0)},
		{topics.Events, "d2", ev("e2", "d2", 1000)},
		{topics.Events, "d1", ev("e3", "d1", 2000)},
		{topics.Events, "d3", ev("e4", "d3", 4000)},
		{topics.Wakes, "d1", wake("w1", "d1", 100, wakepushv1.WakeReason_WAKE_REASON_LEADING, 0, "e1")},
		{topics.Wakes, "d1", wake("w2", "d1", 3000, wakepushv1.WakeReason_WAKE_REASON_TRAILING, 2000)}, // event_ids truncated away
		{topics.Wakes, "d3", wake("w3", "d3", 10000, wakepushv1.WakeReason_WAKE_REASON_LEADING, 4000, "e4")},
		{topics.Deliveries, "d1", del("x0", "w1", "d1", 200, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY, 503)},
		{topics.Deliveries, "d1", del("x1", "w1", "d1", 400, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED, 200)},
		{topics.Deliveries, "d1", del("x2", "w2", "d1", 3200, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED, 200)},
		{topics.Receipts, "d1", &wakepushv1.Receipt{Id: "c1", CreatedAt: tsp(at(1000)), WakeId: "w1", DeviceId: "d1", App: "im.monal", ReceivedAt: tsp(at(900))}},
		{topics.WakesDLQ, "d9", &wakepushv1.DeadLetter{Id: "l1", CreatedAt: tsp(at(5000)), Topic: topics.Wakes, Partition: 1, Offset: 5,
			Stage: "sender", Reason: "attempts exhausted", Value: []byte("SECRET-VALUE")}},
	}
	f := fixture{base: base}
	for _, r := range recs {
		rec := kafkax.Record{Topic: r.topic, Key: r.key, Msg: r.msg}
		if tid := fixtureTrace(r.msg.ProtoReflect().Get(r.msg.ProtoReflect().Descriptor().Fields().ByName("id")).String()); tid != "" {
			traceID, _ := trace.TraceIDFromHex(tid)
			spanID, _ := trace.SpanIDFromHex(fixtureParentSpan)
			rec.Ctx = trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true}))
		}
		f.records = append(f.records, rec)
	}
	return f
}

// rowsPerTable is what newFixture yields in each table.
var rowsPerTable = map[string]uint64{"events": 4, "registrations": 1, "wakes": 3, "deliveries": 3, "receipts": 1, "dead_letters": 1}

func TestRecorderEndToEnd(t *testing.T) {
	brokers := stacktest.Kafka(t)
	srv := stacktest.ClickHouse(t)
	db, conn := testDatabase(t, srv, "rec_e2e")
	admin := stacktest.FreeAddr(t)
	group := "recorder-e2e-" + db

	// Run the recorder in-process (its main is service.Main("recorder", run)).
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	runErr := make(chan error, 1)
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", srv.DSN(db)) // a secret: environment or file only
	go func() {
		runErr <- run(ctx, []string{
			"-kafka-brokers", brokers, "-kafka-partitions", "2",
			"-admin-addr", admin, "-log-format", "text", "-log-level", "warn",
			"-recorder-group", group, "-recorder-flush-interval", "100ms", "-drain-timeout", "20s",
		})
	}()
	waitReady(t, "http://"+admin+"/readyz", runErr)

	kcfg := &kafkax.Config{Brokers: []string{brokers}, BatchTimeout: 2 * time.Millisecond}
	prod, err := kafkax.NewProducer(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	f := newFixture()
	if err := prod.Produce(ctx, f.records...); err != nil {
		t.Fatal(err)
	}
	// Two poison records: bytes that are no PushEvent, and a schema this build does not know.
	w := &kafka.Writer{Addr: kafka.TCP(brokers), RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond, Balancer: &kafka.Murmur2Balancer{}}
	defer w.Close()
	if err := w.WriteMessages(ctx,
		kafka.Message{Topic: topics.Events, Key: []byte("d1"), Value: []byte{0xff, 0xff, 0xff, 0xff},
			Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v1.PushEvent")}}},
		kafka.Message{Topic: topics.Receipts, Key: []byte("d1"), Value: []byte("SECRET"),
			Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v9.Receipt")}}},
	); err != nil {
		t.Fatal(err)
	}

	qctx := context.Background()
	want := map[string]uint64{}
	for k, v := range rowsPerTable {
		want[k] = v
	}
	want["dead_letters"] += 2 // the poison records
	waitCounts(t, conn, db, "", want, runErr)

	t.Run("rows carry the record fields", func(t *testing.T) {
		var (
			app, platform, source, sender string
			accepted                      time.Time
			urgent, important             bool
			count                         uint32
			nodeHashV                     uint64
			part                          int32
			off                           int64
		)
		if err := conn.QueryRow(qctx, "SELECT app, platform, source, sender, accepted_at, urgent, important, message_count, node_hash, kafka_partition, kafka_offset FROM "+db+".events FINAL WHERE id = 'e1'").
			Scan(&app, &platform, &source, &sender, &accepted, &urgent, &important, &count, &nodeHashV, &part, &off); err != nil {
			t.Fatal(err)
		}
		if app != "im.monal" || platform != "APNS" || source != "XMPP_COMPONENT" || sender != "example.com" || !accepted.Equal(f.base) ||
			urgent || !important || count != 2 || nodeHashV != nodeHash("node-d1") || part < 0 || part > 1 || off < 0 {
			t.Errorf("events row e1 = %v %v %v %v %v %v %v %v %v %v %v", app, platform, source, sender, accepted, urgent, important, count, nodeHashV, part, off)
		}
		var ids []string
		var first, created time.Time
		var reason string
		if err := conn.QueryRow(qctx, "SELECT event_ids, first_event_at, created_at, reason FROM "+db+".wakes FINAL WHERE id = 'w1'").Scan(&ids, &first, &created, &reason); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, []string{"e1"}) || !first.Equal(f.base) || !created.Equal(f.base.Add(100*time.Millisecond)) || reason != "LEADING" {
			t.Errorf("wakes row w1 = %v %v %v %v", ids, first, created, reason)
		}
		var outcome string
		var status uint16
		var latency float64
		if err := conn.QueryRow(qctx, "SELECT outcome, status_code, provider_latency_ms FROM "+db+".deliveries FINAL WHERE id = 'x0'").Scan(&outcome, &status, &latency); err != nil {
			t.Fatal(err)
		}
		if outcome != "RETRY" || status != 503 || latency != 25 {
			t.Errorf("deliveries row x0 = %v %v %v", outcome, status, latency)
		}
		var hasToken bool
		var state, env string
		var registered *time.Time
		if err := conn.QueryRow(qctx, "SELECT has_token, state, environment, registered_at FROM "+db+".registrations FINAL WHERE id = 'r1'").Scan(&hasToken, &state, &env, &registered); err != nil {
			t.Fatal(err)
		}
		if !hasToken || state != "ACTIVE" || env != "SANDBOX" || registered == nil || !registered.Equal(f.base.Add(-time.Hour)) {
			t.Errorf("registrations row r1 = %v %v %v %v", hasToken, state, env, registered)
		}
		var received *time.Time
		if err := conn.QueryRow(qctx, "SELECT received_at FROM "+db+".receipts FINAL WHERE id = 'c1'").Scan(&received); err != nil {
			t.Fatal(err)
		}
		if received == nil || !received.Equal(f.base.Add(900*time.Millisecond)) {
			t.Errorf("receipts row c1 received_at = %v", received)
		}
	})

	t.Run("rows carry the trace context of their record", func(t *testing.T) {
		// Every traced record's row has its trace id and the id of the producer span (a child
		// of the remote parent, so a new span id); untraced ones have none.
		hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
		for _, table := range []string{"events", "wakes", "deliveries", "receipts", "dead_letters"} {
			rows, err := conn.Query(qctx, "SELECT id, trace_id, span_id FROM "+db+"."+table+" FINAL ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			n, traced := 0, 0
			for rows.Next() {
				var id, traceID, spanID string
				if err := rows.Scan(&id, &traceID, &spanID); err != nil {
					t.Fatal(err)
				}
				n++
				want := fixtureTrace(id)
				switch {
				case want == "" && (traceID != "" || spanID != ""):
					t.Errorf("%s row %s: trace_id %q span_id %q, want none (created in no sampled trace)", table, id, traceID, spanID)
				case want != "" && (traceID != want || !hex16.MatchString(spanID) || spanID == fixtureParentSpan):
					t.Errorf("%s row %s: trace_id %q span_id %q, want trace %s and the producer span's own id", table, id, traceID, spanID, want)
				case want != "":
					traced++
				}
			}
			rows.Close()
			if n == 0 || traced != 1 {
				t.Errorf("%s: %d rows, %d traced; want 1 traced", table, n, traced)
			}
		}
		// From a trace to its rows (the query recorder/README.md documents).
		got := map[string]string{}
		for _, id := range []string{"e1", "w1", "x1"} {
			rows, err := conn.Query(ch.Context(qctx, ch.WithParameters(ch.Parameters{"trace_id": fixtureTrace(id)})), `
				SELECT 'event' AS kind, id FROM `+db+`.events WHERE trace_id = {trace_id:String}
				UNION ALL SELECT 'wake', id FROM `+db+`.wakes WHERE trace_id = {trace_id:String}
				UNION ALL SELECT 'delivery', id FROM `+db+`.deliveries WHERE trace_id = {trace_id:String}
				UNION ALL SELECT 'receipt', id FROM `+db+`.receipts WHERE trace_id = {trace_id:String}`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var kind, rid string
				if err := rows.Scan(&kind, &rid); err != nil {
					t.Fatal(err)
				}
				got[id] += kind + ":" + rid + " "
			}
			rows.Close()
		}
		want := map[string]string{"e1": "event:e1 ", "w1": "wake:w1 ", "x1": "delivery:x1 "}
		if !maps.Equal(got, want) {
			t.Errorf("rows by trace id = %q, want %q", got, want)
		}
		var regID string
		if err := conn.QueryRow(qctx, "SELECT registration_id FROM "+db+".registrations FINAL WHERE id = 'r1'").Scan(&regID); err != nil {
			t.Fatal(err)
		}
		if regID != "reg-1" {
			t.Errorf("registrations row r1 registration_id = %q, want reg-1", regID)
		}
	})

	t.Run("nothing secret is stored", func(t *testing.T) {
		for table := range rowsPerTable {
			var n uint64
			if err := conn.QueryRow(qctx, "SELECT count() FROM "+db+"."+table+" WHERE position(toString(tuple(*)), 'SECRET') > 0").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%d row(s) of %s hold a token or a record value", n, table)
			}
		}
	})

	t.Run("poison records are skipped and counted", func(t *testing.T) {
		rows, err := conn.Query(qctx, "SELECT source_topic, reason, value_bytes FROM "+db+".dead_letters FINAL WHERE stage = 'recorder' ORDER BY source_topic")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var topic, reason string
			var size uint32
			if err := rows.Scan(&topic, &reason, &size); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s|%s|%d", topic, reason, size))
		}
		want := []string{"push.events|undecodable wakepush.v1.PushEvent|4", "push.receipts|unknown schema|6"}
		if !slices.Equal(got, want) {
			t.Errorf("recorder dead letters = %q, want %q", got, want)
		}
		if n := metricSum(t, "http://"+admin+"/metrics", "wakepush_recorder_poison_records"); n != 2 {
			t.Errorf("poison records metric = %v, want 2", n)
		}
		if n := metricSum(t, "http://"+admin+"/metrics", "wakepush_recorder_rows"); n != 15 {
			t.Errorf("rows metric = %v, want 15", n)
		}
	})

	t.Run("uncovered_events finds the events without a timely wake", func(t *testing.T) {
		got := queryColumn(t, queryConn(t, srv, db), "uncovered_events", ch.Parameters{
			"from": fmtTime(f.base.Add(-time.Minute)), "to": fmtTime(f.base.Add(time.Minute)),
			"min_interval_ms": "1000", "slack_ms": "1000", "app": "",
		}, "event_id")
		if want := []string{"e2", "e4"}; !slices.Equal(got, want) {
			t.Errorf("uncovered events = %v, want %v (e1 and e3 have wakes in time)", got, want)
		}
	})

	t.Run("latency_quantiles measures event to first accepted delivery", func(t *testing.T) {
		q, err := schema.Query("latency_quantiles")
		if err != nil {
			t.Fatal(err)
		}
		qc := queryConn(t, srv, db)
		var (
			minute                         time.Time
			app, platform                  string
			events, delivered, undelivered uint64
			q3                             []float64
			p50, p90, p99, maxMS           float64
		)
		params := ch.Parameters{"from": fmtTime(f.base.Add(-time.Minute)), "to": fmtTime(f.base.Add(time.Minute)), "horizon_s": "3600", "app": "im.monal"}
		if err := qc.QueryRow(ch.Context(qctx, ch.WithParameters(params)), q).
			Scan(&minute, &app, &platform, &events, &delivered, &undelivered, &q3, &p50, &p90, &p99, &maxMS); err != nil {
			t.Fatal(err)
		}
		// e1: accepted 0 ms, w1 first accepted delivery at 400 ms (the 200 ms attempt was RETRY);
		// e3: accepted 2000 ms, covered by w2 (created after it), delivered at 3200 ms.
		if events != 4 || delivered != 2 || undelivered != 2 || maxMS != 1200 || p50 < 400 || p50 > 1200 {
			t.Errorf("latency row = minute %v %s/%s events %d delivered %d undelivered %d p50 %v p90 %v p99 %v max %v; want 4 events, 2 delivered, max 1200",
				minute, app, platform, events, delivered, undelivered, p50, p90, p99, maxMS)
		}
	})

	t.Run("wake latency rollup", func(t *testing.T) {
		var wakes uint64
		var maxMS float64
		if err := conn.QueryRow(qctx, "SELECT sum(wakes), max(max_latency_ms) FROM "+db+".wake_latency_1m").Scan(&wakes, &maxMS); err != nil {
			t.Fatal(err)
		}
		if wakes != 3 || maxMS != 6000 {
			t.Errorf("rollup: %d wakes, max %v ms; want 3 and 6000", wakes, maxMS)
		}
	})

	t.Run("per-minute rollups count what the recorder inserted", func(t *testing.T) {
		for _, c := range []struct {
			query string
			want  uint64
		}{
			{"SELECT sum(events) FROM " + db + ".events_1m WHERE app = 'im.monal' AND sender = 'example.com' AND source = 'XMPP_COMPONENT'", rowsPerTable["events"]},
			{"SELECT sum(deliveries) FROM " + db + ".deliveries_1m WHERE app = 'im.monal' AND platform = 'APNS'", rowsPerTable["deliveries"]},
			{"SELECT sum(deliveries) FROM " + db + ".deliveries_1m WHERE outcome = 'ACCEPTED'", 2},
			{"SELECT sum(dead_letters) FROM " + db + ".dead_letters_1m WHERE stage = 'sender' AND source_topic = 'push.wakes'", 1},
			{"SELECT sum(dead_letters) FROM " + db + ".dead_letters_1m WHERE stage = 'recorder'", 2},
		} {
			var n uint64
			if err := conn.QueryRow(qctx, c.query).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != c.want {
				t.Errorf("%s = %d, want %d", c.query, n, c.want)
			}
		}
		// Deliveries' wake -> provider answer: x0 200-100, x1 400-100, x2 3200-100 ms.
		var q []float64
		if err := conn.QueryRow(qctx, "SELECT quantilesTDigestMerge(0.5, 0.9, 0.99)(wake_to_provider_ms) FROM "+db+".deliveries_1m").Scan(&q); err != nil {
			t.Fatal(err)
		}
		if len(q) != 3 || q[0] != 300 || q[2] < 2000 || q[2] > 3100 {
			t.Errorf("wake_to_provider_ms quantiles = %v, want p50 300 and p99 near 3100", q)
		}
	})

	t.Run("a replay does not duplicate rows", func(t *testing.T) {
		if err := prod.Produce(ctx, f.records...); err != nil {
			t.Fatal(err)
		}
		doubled := map[string]uint64{}
		for k, v := range rowsPerTable {
			doubled[k] = 2 * v
		}
		doubled["dead_letters"] += 2
		waitCounts(t, conn, db, "", doubled, runErr) // the replayed records were inserted…
		want := map[string]uint64{}
		for k, v := range rowsPerTable {
			want[k] = v
		}
		want["dead_letters"] += 2
		waitCounts(t, conn, db, "FINAL", want, runErr) // …and collapse under FINAL
		for table := range rowsPerTable {
			if err := conn.Exec(qctx, "OPTIMIZE TABLE "+db+"."+table+" FINAL"); err != nil {
				t.Fatal(err)
			}
		}
		waitCounts(t, conn, db, "", want, runErr) // and after the merge
	})

	// SIGTERM: the recorder drains and commits; every record's offset is committed.
	stop()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("run returned %v after shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("recorder did not stop within 30s of shutdown")
	}
	produced := map[string]int64{}
	for _, r := range f.records {
		produced[r.Topic] += 2
	}
	produced[topics.Events]++
	produced[topics.Receipts]++
	client := &kafka.Client{Addr: kafka.TCP(brokers), Timeout: 10 * time.Second}
	req := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for topic := range produced {
		req.Topics[topic] = []int{0, 1}
	}
	resp, err := client.OffsetFetch(qctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for topic, n := range produced {
		var committed int64
		for _, p := range resp.Topics[topic] {
			if p.CommittedOffset > 0 {
				committed += p.CommittedOffset
			}
		}
		if committed != n {
			t.Errorf("topic %s: committed offsets sum to %d, want %d (every record)", topic, committed, n)
		}
	}
}

// TestStoreInsertDeduplicates checks the insert_deduplication_token path against the real
// ClickHouse: the same batch inserted twice (a retry after an insert that did land) is stored
// once, also in the rollup fed by the materialized view.
func TestStoreInsertDeduplicates(t *testing.T) {
	srv := stacktest.ClickHouse(t)
	db, conn := testDatabase(t, srv, "rec_dedup")
	ctx := t.Context()
	s, err := openStore(ctx, srv.DSN(db), clickhousex.Config{}, true, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := &kafka.Message{Topic: topics.Wakes, Partition: 0}
	now := time.Now() // not t0: rows older than the 90-day TTL are dropped on insert
	var rows [][]any
	for i := range 100 {
		msg.Offset = int64(i)
		_, row, err := rowFor(&wakepushv1.Wake{Id: fmt.Sprintf("w%d", i), CreatedAt: tsp(now), DeviceId: "d", FirstEventAt: tsp(now.Add(-time.Second))}, msg)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	for range 2 {
		if err := s.Insert(ctx, wakesTable, "token-a", rows); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count() FROM " + db + ".wakes"); n != 100 {
		t.Errorf("after inserting one batch twice with one token: %d rows, want 100", n)
	}
	if n := count("SELECT sum(wakes) FROM " + db + ".wake_latency_1m"); n != 100 {
		t.Errorf("rollup counts %d wakes, want 100 (the deduplicated block must not reach the view)", n)
	}
	if err := s.Insert(ctx, wakesTable, "token-b", rows); err != nil { // a replay in another batch
		t.Fatal(err)
	}
	if n := count("SELECT count() FROM " + db + ".wakes"); n != 200 {
		t.Errorf("after a replay with another token: %d rows before merge, want 200", n)
	}
	if n := count("SELECT count() FROM " + db + ".wakes FINAL"); n != 100 {
		t.Errorf("after a replay: %d rows with FINAL, want 100", n)
	}
}

// BenchmarkInsert measures rows/s of one recorder insert (10000 events rows per batch) into the
// test ClickHouse over the native protocol.
func BenchmarkInsert(b *testing.B) {
	srv := stacktest.ClickHouse(b)
	db, _ := testDatabase(b, srv, "rec_bench")
	ctx := context.Background()
	s, err := openStore(ctx, srv.DSN(db), clickhousex.Config{}, true, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 10000
	rows := make([][]any, n)
	msg := &kafka.Message{Topic: topics.Events, Partition: 0}
	for i := range rows {
		msg.Offset = int64(i)
		_, row, err := rowFor(&wakepushv1.PushEvent{Id: records.NewID(), AcceptedAt: tsp(time.Now()), DeviceId: fmt.Sprintf("dev-%06d", i%5000), App: "im.monal",
			Platform: wakepushv1.Platform_PLATFORM_APNS, Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: "example.com", Node: "node"}, msg)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = row
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		if err := s.Insert(ctx, eventsTable, "bench-"+strconv.Itoa(i)+"-"+db, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkInsertClickHouseCPU measures what one recorder insert costs ClickHouse: the server
// process's CPU time (from /proc) per insert and per row, for a table with a materialized view
// (events, feeding events_1m) and one without (receipts), at 1 row (the fixed cost of an insert)
// and at 2,000 rows (about one second of events at the standard load test's rate). After the
// inserts it waits for the database's merges to finish, so the merges they caused count too.
// The recorder's flush interval sets how often each table pays the fixed cost
// (docs/performance.md, "What one insert costs ClickHouse").
func BenchmarkInsertClickHouseCPU(b *testing.B) {
	srv := stacktest.ClickHouse(b)
	now := time.Now()
	event := func(i int) proto.Message {
		return &wakepushv1.PushEvent{Id: records.NewID(), AcceptedAt: tsp(now), DeviceId: fmt.Sprintf("dev-%06d", i%5000), App: "im.monal",
			Platform: wakepushv1.Platform_PLATFORM_APNS, Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: "example.com", Node: "node"}
	}
	receipt := func(i int) proto.Message {
		return &wakepushv1.Receipt{Id: records.NewID(), CreatedAt: tsp(now), WakeId: records.NewID(), DeviceId: fmt.Sprintf("dev-%06d", i%5000),
			App: "im.monal", ReceivedAt: tsp(now)}
	}
	for _, c := range []struct {
		name  string
		topic string
		tbl   table
		rec   func(int) proto.Message
	}{
		{"events_with_view", topics.Events, eventsTable, event},
		{"receipts", topics.Receipts, receiptsTable, receipt},
	} {
		for _, n := range []int{1, 2000} {
			b.Run(fmt.Sprintf("%s/rows=%d", c.name, n), func(b *testing.B) {
				db, conn := testDatabase(b, srv, "rec_cpu")
				ctx := context.Background()
				s, err := openStore(ctx, srv.DSN(db), clickhousex.Config{}, true, discardLogger())
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				// Fresh record ids in every insert, as in a real flush: rows that repeat ids would
				// collapse in the ReplacingMergeTree's merges and make them look cheaper. Building
				// them costs this process, not ClickHouse, so it is in ns/op but not in the metrics.
				rows := make([][]any, n)
				cpu0, err := proccpu.Read(srv.Pid())
				if err != nil {
					b.Fatal(err)
				}
				i := 0
				for b.Loop() {
					for j := range rows {
						_, row, err := rowFor(c.rec(j), &kafka.Message{Topic: c.topic, Partition: j % 4, Offset: int64(i*n + j)})
						if err != nil {
							b.Fatal(err)
						}
						rows[j] = row
					}
					i++
					if err := s.Insert(ctx, c.tbl, fmt.Sprintf("bench-%s-%d", db, i), rows); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				waitMerges(b, conn, db)
				cpu1, err := proccpu.Read(srv.Pid())
				if err != nil {
					b.Fatal(err)
				}
				cpu := cpu1 - cpu0
				b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "clickhouse_cpu_ms/insert")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "clickhouse_cpu_us/row")
			})
		}
	}
}

// waitMerges waits until ClickHouse runs no merge of database db.
func waitMerges(b *testing.B, conn driver.Conn, db string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n uint64
		if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.merges WHERE database = ?", db).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("merges of %s still running after 30 s", db)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitReady(t *testing.T, url string, runErr <-chan error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case err := <-runErr:
			t.Fatalf("recorder exited before ready: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = string(body)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("recorder not ready within 90s: %s", last)
}

// waitCounts waits until every table has the wanted row count (final is "" or "FINAL").
func waitCounts(t *testing.T, conn driver.Conn, db, final string, want map[string]uint64, runErr <-chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got map[string]uint64
	for time.Now().Before(deadline) {
		select {
		case err := <-runErr:
			t.Fatalf("recorder exited: %v", err)
		default:
		}
		got = map[string]uint64{}
		ok := true
		for table, n := range want {
			var c uint64
			if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+db+"."+table+" "+final).Scan(&c); err != nil {
				t.Fatal(err)
			}
			got[table] = c
			ok = ok && c == n
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("row counts %s = %v, want %v", final, got, want)
}

// queryConn returns a connection whose default database is db (the analyst queries name tables
// without a database).
func queryConn(t *testing.T, srv *chdb.Server, db string) driver.Conn {
	t.Helper()
	opts, err := ch.ParseDSN(srv.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ch.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// queryColumn runs an analyst query and returns one column of its rows as strings.
func queryColumn(t *testing.T, conn driver.Conn, name string, params ch.Parameters, column string) []string {
	t.Helper()
	q, err := schema.Query(name)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ch.Context(context.Background(), ch.WithParameters(params)),
		"SELECT toString("+column+") FROM ("+strings.TrimRight(q, "; \n")+")")
	if err != nil {
		t.Fatalf("%s: %v", name, err)
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

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") }

// metricSum adds the values of every sample of the Prometheus metric name (any labels).
func metricSum(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	found := false
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		metric, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		base, _, _ := strings.Cut(metric, "{")
		if base != name && base != name+"_total" {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	if !found {
		t.Errorf("metric %s not exposed on %s", name, url)
	}
	return sum
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
