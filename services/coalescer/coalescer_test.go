package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const testPartitions = 2

// writeAppsFile writes an apps file with an FCM app per interval ("app-<interval>").
func writeAppsFile(t testing.TB, intervals ...time.Duration) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apps:\n")
	for _, d := range intervals {
		fmt.Fprintf(&b, "  - id: app-%s\n    platform: fcm\n    fcm: {project_id: test}\n    coalesce: {min_interval: %s}\n", d, d)
	}
	path := filepath.Join(t.TempDir(), "apps.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func appOf(d time.Duration) string { return "app-" + d.String() }

// testArgs are the flags of a coalescer on broker with the apps file.
func testArgs(broker, appsFile, admin string, extra ...string) []string {
	return append([]string{
		"-kafka-brokers=" + broker,
		"-kafka-partitions=" + fmt.Sprint(testPartitions),
		"-apps-file=" + appsFile,
		"-admin-addr=" + admin,
		"-log-format=text",
		"-log-level=info",
		"-session-timeout=6s",
		"-restore-slack=5s",
		"-commit-interval=200ms",
	}, extra...)
}

func kafkaConfig(broker string) *kafkax.Config {
	return &kafkax.Config{Brokers: []string{broker}, Partitions: testPartitions, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
}

// events produces push events; ctx's span (if any) becomes each record's creation context.
type events struct {
	t *testing.T
	p *kafkax.Producer
}

func newEvents(t *testing.T, broker string) *events {
	t.Helper()
	cfg := kafkaConfig(broker)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Events, topics.Wakes, topics.EventsDLQ); err != nil {
		t.Fatal(err)
	}
	p, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &events{t: t, p: p}
}

func (e *events) send(ctx context.Context, evs ...*wakepushv1.PushEvent) {
	e.t.Helper()
	recs := make([]kafkax.Record, len(evs))
	for i, ev := range evs {
		recs[i] = kafkax.Record{Ctx: ctx, Topic: topics.Events, Key: ev.DeviceId, Msg: ev}
	}
	if err := e.p.Produce(context.Background(), recs...); err != nil {
		e.t.Fatal(err)
	}
}

func event(id, device, app string, urgent bool) *wakepushv1.PushEvent {
	return &wakepushv1.PushEvent{Id: id, AcceptedAt: records.Timestamp(time.Now()), DeviceId: device, App: app, Urgent: urgent,
		Platform: wakepushv1.Platform_PLATFORM_FCM, Source: wakepushv1.EventSource_EVENT_SOURCE_HTTP}
}

// received is a record read back from a topic, with when the test saw it.
type received struct {
	msg  proto.Message
	seen time.Time
}

// watch reads every partition of topic from the start and delivers decoded records.
func watch(t *testing.T, broker, topic string) <-chan received {
	t.Helper()
	ch := make(chan received, 100)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for p := range testPartitions {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 50 * time.Millisecond})
		wg.Go(func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				v, err := records.Decode(kafkax.Header(&m, records.HeaderSchema), m.Value)
				if err != nil {
					t.Errorf("undecodable record on %s: %v", topic, err)
					return
				}
				select {
				case ch <- received{v, time.Now()}:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	return ch
}

func next[T proto.Message](t *testing.T, ch <-chan received, timeout time.Duration) (T, time.Time) {
	t.Helper()
	select {
	case r := <-ch:
		v, ok := r.msg.(T)
		if !ok {
			t.Fatalf("got a %T, want %T", r.msg, v)
		}
		return v, r.seen
	case <-time.After(timeout):
		var zero T
		t.Fatalf("no %T within %s", zero, timeout)
		return zero, time.Time{}
	}
}

func none(t *testing.T, ch <-chan received, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected record: %v", r.msg)
	case <-time.After(d):
	}
}

// startRun runs the service in-process (its run function, as main does) and returns a stop
// function that cancels it (SIGTERM) and waits for it to return.
func startRun(t *testing.T, args []string, admin string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args) }()
	waitReady(t, "http://"+admin+"/readyz", done)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("run did not return within 30s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitReady(t *testing.T, url string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("run returned before ready: %v", err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 30s", url)
}

// TestCoalescer runs the service's consumer on a real (kfake) broker: leading wake now,
// trailing wake one interval later covering the absorbed events, a re-delivered event id
// dropped, urgent bypass, dead letters for an unknown app and an undecodable record, and a
// process span per wake linking to the covered events' trace contexts.
func TestCoalescer(t *testing.T) {
	broker := stacktest.Kafka(t)
	const interval = 2 * time.Second
	cfg, err := loadSettings(testArgs(broker, writeAppsFile(t, interval), stacktest.FreeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })

	evs := newEvents(t, broker)
	wakes := watch(t, broker, topics.Wakes)
	dlq := watch(t, broker, topics.EventsDLQ)

	producer, err := kafkax.NewProducer(&cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := newCoalescer(cfg, log, producer)
	if err != nil {
		t.Fatal(err)
	}
	c.tracer = tp.Tracer("test")
	joined := make(chan struct{})
	var joinOnce sync.Once
	c.onJoined = func() { joinOnce.Do(func() { close(joined) }) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.consume(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consume: %v", err)
		}
	}()
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("group not joined within 30s")
	}

	app := appOf(interval)
	tracer := tp.Tracer("ingest")
	ectx, espan := tracer.Start(context.Background(), "ingest e1")
	espan.End()
	e1 := event(records.NewID(), "dev-1", app, false)
	sent := time.Now()
	evs.send(ectx, e1)

	// Leading edge: now.
	w1, seen := next[*wakepushv1.Wake](t, wakes, 5*time.Second)
	t.Logf("leading wake %s after %s", w1.Id, seen.Sub(sent))
	if w1.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING || !slices.Equal(w1.EventIds, []string{e1.Id}) || w1.EventCount != 1 ||
		w1.DeviceId != "dev-1" || w1.App != app || w1.Platform != wakepushv1.Platform_PLATFORM_FCM {
		t.Fatalf("first wake: %v", w1)
	}
	if want := coalesce.WakeID("dev-1", e1.Id, e1.Id, 1, e1.AcceptedAt.AsTime().UnixNano()); w1.Id != want {
		t.Errorf("wake id %s, want the deterministic %s", w1.Id, want)
	}

	// Coalesce: absorbed, one trailing wake when the interval ends; the re-delivered e2 changes nothing.
	var links []trace.SpanContext
	var trailing []*wakepushv1.PushEvent
	for i := range 3 {
		ctx, span := tracer.Start(context.Background(), fmt.Sprintf("ingest e%d", i+2))
		span.End()
		links = append(links, span.SpanContext())
		ev := event(records.NewID(), "dev-1", app, false)
		trailing = append(trailing, ev)
		evs.send(ctx, ev)
	}
	evs.send(context.Background(), trailing[0]) // producer retry / redelivery
	w2, _ := next[*wakepushv1.Wake](t, wakes, interval+3*time.Second)
	ids := []string{trailing[0].Id, trailing[1].Id, trailing[2].Id}
	if w2.Reason != wakepushv1.WakeReason_WAKE_REASON_TRAILING || !slices.Equal(w2.EventIds, ids) || w2.EventCount != 3 {
		t.Fatalf("second wake: %v, want trailing covering %v", w2, ids)
	}
	if gap := w2.CreatedAt.AsTime().Sub(w1.CreatedAt.AsTime()); gap < interval {
		t.Errorf("trailing wake %s after the leading one, want >= %s", gap, interval)
	}

	// Urgent: bypasses the interval that the trailing wake started.
	call := event(records.NewID(), "dev-1", app, true)
	evs.send(context.Background(), call)
	w3, _ := next[*wakepushv1.Wake](t, wakes, 3*time.Second)
	if w3.Reason != wakepushv1.WakeReason_WAKE_REASON_URGENT || !w3.Urgent || w3.CreatedAt.AsTime().Sub(w2.CreatedAt.AsTime()) >= interval {
		t.Fatalf("urgent wake: %v", w3)
	}

	// Poison: an unknown app and an undecodable record go to the DLQ, and processing goes on.
	unknown := event(records.NewID(), "dev-2", "no-such-app", false)
	evs.send(context.Background(), unknown)
	w := &kafka.Writer{Addr: kafka.TCP(broker), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafka.Message{Topic: topics.Events, Key: []byte("dev-3"), Value: []byte("\xffgarbage"),
		Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(records.SchemaName(&wakepushv1.PushEvent{}))}}}); err != nil {
		t.Fatal(err)
	}
	e5 := event(records.NewID(), "dev-4", app, false)
	evs.send(context.Background(), e5)
	reasons := map[string]*wakepushv1.DeadLetter{}
	for range 2 {
		d, _ := next[*wakepushv1.DeadLetter](t, dlq, 5*time.Second)
		reasons[d.Reason] = d
	}
	if d := reasons["unknown app"]; d == nil || d.Topic != topics.Events || d.Stage != "coalescer" {
		t.Errorf("no unknown-app dead letter: %v", reasons)
	} else if got := new(wakepushv1.PushEvent); proto.Unmarshal(d.Value, got) != nil || got.Id != unknown.Id {
		t.Errorf("dead letter does not carry the original record")
	}
	var undecodable bool
	for r, d := range reasons {
		undecodable = undecodable || (strings.HasPrefix(r, "undecodable record") && string(d.Value) == "\xffgarbage")
	}
	if !undecodable {
		t.Errorf("no undecodable dead letter: %v", reasons)
	}
	w4, _ := next[*wakepushv1.Wake](t, wakes, 5*time.Second)
	if w4.DeviceId != "dev-4" || w4.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING {
		t.Errorf("wake after poison records: %v", w4)
	}
	// Nothing else: no trailing wake for dev-1 after the urgent one (nothing pending).
	none(t, wakes, interval+500*time.Millisecond)

	// Traces: a CONSUMER process span per wake, linking to the covered events.
	var trailingSpan sdktrace.ReadOnlySpan
	var processSpans int
	for _, s := range spans.Ended() {
		if s.Name() != "process "+topics.Events {
			continue
		}
		processSpans++
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("process span kind %v", s.SpanKind())
		}
		for _, a := range s.Attributes() {
			if a.Key == "wakepush.wake.id" && a.Value.AsString() == w2.Id {
				trailingSpan = s
			}
		}
	}
	if processSpans != 4 {
		t.Errorf("%d process spans, want one per wake (4)", processSpans)
	}
	if trailingSpan == nil {
		t.Fatal("no process span for the trailing wake")
	}
	var linked []trace.TraceID
	for _, l := range trailingSpan.Links() {
		linked = append(linked, l.SpanContext.TraceID())
	}
	var want []trace.TraceID
	for _, l := range links {
		want = append(want, l.TraceID())
	}
	sortIDs := func(s []trace.TraceID) {
		sort.Slice(s, func(i, j int) bool { return s[i].String() < s[j].String() })
	}
	sortIDs(linked)
	sortIDs(want)
	if !slices.Equal(linked, want) {
		t.Errorf("trailing wake links to traces %v, want the covered events' %v", linked, want)
	}
	// Its parent is the first covered event's context: that publish's trace goes on to the wake.
	if p := trailingSpan.Parent(); p.TraceID() != links[0].TraceID() || p.SpanID() != links[0].SpanID() {
		t.Errorf("trailing wake's parent is %s/%s, want the first covered event's %s/%s", p.TraceID(), p.SpanID(), links[0].TraceID(), links[0].SpanID())
	}
}

// TestRestartInsideInterval stops the service while a trailing wake is pending and starts it
// again inside the interval: the new instance restores the last wake time from push.wakes, so
// the replayed event is absorbed and woken when the original interval ends, not at once.
func TestRestartInsideInterval(t *testing.T) {
	broker := stacktest.Kafka(t)
	const interval = 4 * time.Second
	appsFile := writeAppsFile(t, interval)
	evs := newEvents(t, broker)
	wakes := watch(t, broker, topics.Wakes)
	app := appOf(interval)

	admin := stacktest.FreeAddr(t)
	stop := startRun(t, testArgs(broker, appsFile, admin), admin)
	e1 := event(records.NewID(), "dev-1", app, false)
	evs.send(context.Background(), e1)
	w1, _ := next[*wakepushv1.Wake](t, wakes, 5*time.Second)
	if w1.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING {
		t.Fatalf("first wake %v", w1)
	}
	e2 := event(records.NewID(), "dev-1", app, false)
	evs.send(context.Background(), e2)
	time.Sleep(300 * time.Millisecond) // absorbed by the first instance
	stop()                             // SIGTERM: the pending trailing wake is not sent early
	none(t, wakes, 200*time.Millisecond)

	admin2 := stacktest.FreeAddr(t)
	startRun(t, testArgs(broker, appsFile, admin2), admin2)
	restarted := time.Now()
	if restarted.Sub(w1.CreatedAt.AsTime()) >= interval {
		t.Fatalf("restart took %s, longer than the interval: the test proves nothing", restarted.Sub(w1.CreatedAt.AsTime()))
	}
	w2, _ := next[*wakepushv1.Wake](t, wakes, interval+5*time.Second)
	if w2.Reason != wakepushv1.WakeReason_WAKE_REASON_TRAILING || !slices.Equal(w2.EventIds, []string{e2.Id}) {
		t.Fatalf("wake after restart: %v, want a trailing wake covering e2", w2)
	}
	if gap := w2.CreatedAt.AsTime().Sub(w1.CreatedAt.AsTime()); gap < interval {
		t.Fatalf("wake after restart %s after the previous one, want >= %s (an extra wake inside the interval)", gap, interval)
	}
	none(t, wakes, interval+time.Second)
}

// TestCrashReplay kills the built binary (no final commit): the next instance replays events
// that a wake already covered and drops them as duplicates (ids restored from push.wakes), and
// wakes the uncovered one when the interval of the last wake ends.
func TestCrashReplay(t *testing.T) {
	t.Parallel() // with TestScale: both wait mostly on timers
	broker := stacktest.Kafka(t)
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/coalescer")
	const interval = 10 * time.Second // the new member waits out the dead one's 6 s session
	appsFile := writeAppsFile(t, interval)
	evs := newEvents(t, broker)
	wakes := watch(t, broker, topics.Wakes)
	app := appOf(interval)
	// No periodic commit: everything the first instance did is replayed.
	args := func(admin string) []string { return testArgs(broker, appsFile, admin, "-commit-interval=1h") }

	admin := stacktest.FreeAddr(t)
	p1 := stacktest.StartProcess(t, "coalescer-1", bin, nil, args(admin)...)
	p1.WaitHTTP("http://"+admin+"/readyz", 30*time.Second)
	e1 := event(records.NewID(), "dev-1", app, false)
	other := event(records.NewID(), "dev-2", app, false)
	evs.send(context.Background(), e1, other)
	got := map[string]*wakepushv1.Wake{}
	for range 2 {
		w, _ := next[*wakepushv1.Wake](t, wakes, 5*time.Second)
		got[w.DeviceId] = w
	}
	w1 := got["dev-1"]
	if w1 == nil || w1.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING {
		t.Fatalf("first wakes %v", got)
	}
	e2 := event(records.NewID(), "dev-1", app, false)
	evs.send(context.Background(), e2)
	time.Sleep(300 * time.Millisecond)
	p1.Kill()

	admin2 := stacktest.FreeAddr(t)
	p2 := stacktest.StartProcess(t, "coalescer-2", bin, nil, args(admin2)...)
	p2.WaitHTTP("http://"+admin2+"/readyz", 30*time.Second)
	p2.WaitLine("partition state restored", 30*time.Second)
	w2, _ := next[*wakepushv1.Wake](t, wakes, interval+10*time.Second)
	if w2.DeviceId != "dev-1" || w2.Reason != wakepushv1.WakeReason_WAKE_REASON_TRAILING || !slices.Equal(w2.EventIds, []string{e2.Id}) {
		t.Fatalf("wake after the crash: %v, want only a trailing wake covering e2 (e1 and dev-2's event are duplicates)", w2)
	}
	if gap := w2.CreatedAt.AsTime().Sub(w1.CreatedAt.AsTime()); gap < interval {
		t.Fatalf("wake after the crash %s after the previous one, want >= %s", gap, interval)
	}
	none(t, wakes, 2*time.Second)
	if err := p2.Stop(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	if !slices.ContainsFunc(p2.Lines(), func(l string) bool { return strings.Contains(l, "leaving consumer group") }) {
		t.Error("no orderly shutdown in the log")
	}
}

func TestSettings(t *testing.T) {
	appsFile := writeAppsFile(t, 2*time.Second, 7*time.Second)
	s, err := loadSettings([]string{"-apps-file=" + appsFile, "-restore-slack=3s"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Group != "wakepush-coalescer" || s.window() != 10*time.Second || s.Service.AdminAddr != defaultAdminAddr {
		t.Errorf("settings %+v window %s", s, s.window())
	}
	t.Setenv("WAKEPUSH_COALESCER_GROUP", "other")
	t.Setenv("WAKEPUSH_APPS_FILE", appsFile)
	if s, err = loadSettings(nil); err != nil || s.Group != "other" {
		t.Errorf("env: %v %v", s, err)
	}
	_, err = loadSettings([]string{"-apps-file=", "-max-batch=0", "-commit-interval=0s"})
	for _, want := range []string{"WAKEPUSH_APPS_FILE is required", "WAKEPUSH_COALESCER_MAX_BATCH", "WAKEPUSH_COALESCER_COMMIT_INTERVAL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
	// A path that cannot exist (a fixed one such as /nonexistent may, on a shared machine).
	missing := filepath.Join(t.TempDir(), "no-such-apps.yaml")
	if _, err := loadSettings([]string{"-apps-file=" + missing}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing apps file: %v", err)
	}
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
