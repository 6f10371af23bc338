package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/admin"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
	"github.com/wakepush/wakepush/services/internal/tail"
	"github.com/wakepush/wakepush/services/sender/internal/apns"
)

const (
	fcmAppID   = "im.wakepush.android"
	fcmProject = "wakepush-test"
	appID      = "im.wakepush.test"
	teamID     = "TEAM000001"
	keyID      = "KEY0000001"
	group      = "wakepush-sender"
)

// fixture is a kfake broker, the APNs mock, an apps file pointing at it, and followers of the
// sender's output topics.
type fixture struct {
	t        *testing.T
	kafka    kafkax.Config
	mock     *apnsmock.Server
	fcm      *fcmmock.Server
	key      *ecdsa.PrivateKey
	args     []string
	producer *kafkax.Producer
	// log is the sender's logger (nil: warnings and errors as text on stderr).
	log *slog.Logger

	mu         sync.Mutex
	deliveries []*wakepushv1.Delivery
	regs       []*wakepushv1.Registration
	dlq        []*wakepushv1.DeadLetter
	wakeTraces map[string]trace.TraceID // wake id -> trace of the record
	delTraces  map[string]trace.TraceID // delivery id -> trace of the record
}

func newFixture(t *testing.T, extraArgs ...string) *fixture {
	t.Helper()
	brokers := stacktest.Kafka(t)
	ts := apnsmock.StartTest(t, apnsmock.Config{}, teamID, keyID, appID)
	mock, key, keyFile, caFile := ts.Server, ts.Key, ts.KeyFile, ts.CAFile

	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fmock, err := fcmmock.New(fcmmock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fmock.Close() })
	sa, err := fmock.NewServiceAccount(fcmProject)
	if err != nil {
		t.Fatal(err)
	}
	saFile := write("fcm-sa.json", sa)
	fcmCA := write("fcm-ca.pem", fmock.CACertPEM())
	appsFile := write("apps.yaml", fmt.Appendf(nil, `apps:
  - id: %s
    platform: apns
    apns:
      team_id: %s
      key_id: %s
      key_file: %s
      endpoint: %s
      ca_file: %s
  - id: %s
    platform: fcm
    fcm:
      project_id: %s
      credentials_file: %s
      endpoint: %s
      ca_file: %s
`, appID, teamID, keyID, keyFile, mock.URL(), caFile, fcmAppID, fcmProject, saFile, fmock.URL(), fcmCA))

	f := &fixture{
		t:          t,
		kafka:      kafkax.Config{Brokers: []string{brokers}, Partitions: 2, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond},
		mock:       mock,
		fcm:        fmock,
		key:        key,
		wakeTraces: map[string]trace.TraceID{},
		delTraces:  map[string]trace.TraceID{},
		args: append([]string{
			"-kafka-brokers=" + brokers,
			"-kafka-partitions=2",
			"-apps-file=" + appsFile,
			"-log-format=text",
			"-log-level=warn",
			"-sender-retry-min=20ms",
			"-sender-retry-max=80ms",
			"-drain-timeout=5s",
		}, extraArgs...),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.kafka.EnsureTopics(ctx, topics.Wakes, topics.Registrations, topics.Deliveries, topics.WakesDLQ); err != nil {
		t.Fatal(err)
	}
	if f.producer, err = kafkax.NewProducer(&f.kafka); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.producer.Close() })
	f.follow(topics.Deliveries)
	f.follow(topics.Registrations)
	f.follow(topics.WakesDLQ)
	f.follow(topics.Wakes)
	return f
}

// follow collects a topic's records for the assertions.
func (f *fixture) follow(topic string) {
	ctx, cancel := context.WithCancel(context.Background())
	tl, err := tail.New(&f.kafka, tail.Options{Topic: topic, Handle: func(msg *kafka.Message) {
		if msg.Value == nil && topic == topics.Registrations {
			return // a tombstone
		}
		m, err := records.Decode(kafkax.Header(msg, records.HeaderSchema), msg.Value)
		if err != nil {
			if topic != topics.Wakes { // the poison-wake test writes one on purpose
				f.t.Errorf("undecodable record on %s: %v", topic, err)
			}
			return
		}
		tid := trace.SpanContextFromContext(kafkax.Extract(context.Background(), msg)).TraceID()
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r := m.(type) {
		case *wakepushv1.Delivery:
			f.deliveries = append(f.deliveries, r)
			f.delTraces[r.GetId()] = tid
		case *wakepushv1.Registration:
			f.regs = append(f.regs, r)
		case *wakepushv1.DeadLetter:
			f.dlq = append(f.dlq, r)
		case *wakepushv1.Wake:
			f.wakeTraces[r.GetId()] = tid
		}
	}})
	if err != nil {
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); tl.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
}

// spans records every span of the tests; TestMain installs it with the W3C propagator, as
// telemetry.Setup does for the binary.
var spans = tracetest.NewSpanRecorder()

func TestMain(m *testing.M) {
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

// start runs the sender in-process (settings parsed like the binary's, then serve with a
// test admin server and logger) until the returned stop is called, which asserts a clean exit.
func (f *fixture) start() (stop func()) {
	f.t.Helper()
	addr := stacktest.FreeAddr(f.t)
	cfg, err := loadSettings(append([]string{"-admin-addr=" + addr}, f.args...))
	if err != nil {
		f.t.Fatal(err)
	}
	adm, err := admin.New(addr, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	log := f.log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go adm.Serve(log)
	f.t.Cleanup(func() { adm.Shutdown(context.Background()) })
	base := &service.Base{Name: "sender", Log: log, Admin: adm}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, base) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-errc:
			cancel()
			f.t.Fatalf("sender exited while starting: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			f.t.Fatal("sender not ready after 60s")
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					f.t.Errorf("sender exited with %v", err)
				}
			case <-time.After(30 * time.Second):
				f.t.Error("sender did not stop within 30s")
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) produce(recs ...kafkax.Record) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.producer.Produce(ctx, recs...); err != nil {
		f.t.Fatal(err)
	}
}

// register writes an ACTIVE registration created at createdAt and returns the device id.
func (f *fixture) register(token string, createdAt time.Time) string {
	return f.registerApp(appID, wakepushv1.Platform_PLATFORM_APNS, token, createdAt)
}

func (f *fixture) registerApp(app string, platform wakepushv1.Platform, token string, createdAt time.Time) string {
	id := "dev-" + token[len(token)-12:]
	f.produce(kafkax.Record{Topic: topics.Registrations, Key: id, Msg: &wakepushv1.Registration{
		Id: records.NewID(), CreatedAt: records.Timestamp(createdAt), DeviceId: id, App: app,
		Platform: platform, Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION,
		Token: token, State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
		Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API, RegisteredAt: records.Timestamp(createdAt),
	}})
	return id
}

// wake writes a wake for device inside a span of a test tracer (so it carries a traceparent).
func (f *fixture) wake(device, wakeID string) {
	f.wakeApp(appID, wakepushv1.Platform_PLATFORM_APNS, device, wakeID)
}

func (f *fixture) wakeApp(app string, platform wakepushv1.Platform, device, wakeID string) {
	ctx, span := otel.Tracer("test").Start(context.Background(), "coalesce")
	defer span.End()
	f.produce(kafkax.Record{Ctx: ctx, Topic: topics.Wakes, Key: device, Msg: &wakepushv1.Wake{
		Id: wakeID, CreatedAt: records.Timestamp(time.Now()), DeviceId: device, App: app,
		Platform: platform, Reason: wakepushv1.WakeReason_WAKE_REASON_LEADING, EventCount: 1,
	}})
}

// eventually polls cond until it holds or the timeout passes.
func (f *fixture) eventually(what string, timeout time.Duration, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out after %v waiting for %s\n%s", timeout, what, f.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fixture) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, d := range f.deliveries {
		fmt.Fprintf(&b, "delivery wake=%s outcome=%s attempt=%d status=%d reason=%s\n", d.GetWakeId(), d.GetOutcome(), d.GetAttempt(), d.GetStatusCode(), d.GetReason())
	}
	for _, r := range f.regs {
		fmt.Fprintf(&b, "registration device=%s state=%s source=%s reason=%s\n", r.GetDeviceId(), r.GetState(), r.GetSource(), r.GetReason())
	}
	for _, d := range f.dlq {
		fmt.Fprintf(&b, "dead letter offset=%d reason=%s\n", d.GetOffset(), d.GetReason())
	}
	return b.String()
}

func (f *fixture) deliveriesOf(wakeID string) []*wakepushv1.Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*wakepushv1.Delivery
	for _, d := range f.deliveries {
		if d.GetWakeId() == wakeID {
			out = append(out, d)
		}
	}
	return out
}

func (f *fixture) outcomes(wakeID string) []wakepushv1.DeliveryOutcome {
	var out []wakepushv1.DeliveryOutcome
	for _, d := range f.deliveriesOf(wakeID) {
		out = append(out, d.GetOutcome())
	}
	return out
}

func (f *fixture) has(wakeID string, o wakepushv1.DeliveryOutcome) bool {
	return slices.Contains(f.outcomes(wakeID), o)
}

func (f *fixture) senderRegistrations(device string) []*wakepushv1.Registration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*wakepushv1.Registration
	for _, r := range f.regs {
		if r.GetDeviceId() == device && r.GetSource() == wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER {
			out = append(out, r)
		}
	}
	return out
}

// committed is the sum of the group's committed offsets on push.wakes (= wakes done when
// every partition started at 0).
func (f *fixture) committed() int64 {
	f.t.Helper()
	client, err := f.kafka.Client()
	if err != nil {
		f.t.Fatal(err)
	}
	defer client.Transport.(*kafka.Transport).CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topics.Wakes: {0, 1}}})
	if err != nil {
		f.t.Fatal(err)
	}
	var sum int64
	for _, p := range resp.Topics[topics.Wakes] {
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}

func token(n int) string { return fmt.Sprintf("%064x", n+0xabc000) }

func TestDeliversWake(t *testing.T) {
	f := newFixture(t)
	stop := f.start()

	tok := token(1)
	dev := f.register(tok, time.Now().Add(-time.Hour))
	wakeID := records.NewID()
	sent := time.Now()
	f.wake(dev, wakeID)
	f.wake("dev-never-registered", "wake-unknown")

	f.eventually("an ACCEPTED delivery", 20*time.Second, func() bool { return f.has(wakeID, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) })
	pushes := f.mock.PushesFor(tok)
	if len(pushes) != 1 {
		t.Fatalf("mock got %d pushes for the token, want 1", len(pushes))
	}
	p := pushes[0]
	if p.Topic != appID || p.PushType != "alert" || p.Priority != 10 || p.TeamID != teamID || p.KeyID != keyID {
		t.Errorf("push topic/type/priority/team/key = %s/%s/%d/%s/%s", p.Topic, p.PushType, p.Priority, p.TeamID, p.KeyID)
	}
	if p.ApnsID != wakeID || p.CollapseID != apns.CollapseID(dev) {
		t.Errorf("apns-id %q (want the wake id %q), collapse id %q (want %q)", p.ApnsID, wakeID, p.CollapseID, apns.CollapseID(dev))
	}
	if exp := time.Unix(p.Expiration, 0); exp.Before(sent.Add(time.Hour-time.Minute)) || exp.After(time.Now().Add(time.Hour+time.Minute)) {
		t.Errorf("apns-expiration %v, want about an hour from now", exp)
	}
	var payload, want map[string]any
	json.Unmarshal(p.Payload, &payload)
	json.Unmarshal([]byte(`{"aps":{"alert":{"loc-key":"WAKEPUSH_NEW_ACTIVITY"},"mutable-content":1},"wake_id":"`+wakeID+`"}`), &want)
	if fmt.Sprint(payload) != fmt.Sprint(want) {
		t.Errorf("payload %s, want %v", p.Payload, want)
	}

	d := f.deliveriesOf(wakeID)
	if len(d) != 1 {
		t.Fatalf("deliveries of the wake: %v, want one", f.outcomes(wakeID))
	}
	if d[0].GetAttempt() != 1 || d[0].GetStatusCode() != 200 || d[0].GetProviderMessageId() != wakeID || d[0].GetDeviceId() != dev ||
		d[0].GetEnvironment() != wakepushv1.Environment_ENVIRONMENT_PRODUCTION || d[0].GetProviderLatency().AsDuration() <= 0 {
		t.Errorf("delivery = %v", d[0])
	}

	// Tracing: the Delivery record continues the wake's trace; the provider call is a CLIENT
	// span under the CONSUMER process span.
	f.mu.Lock()
	wakeTrace, delTrace := f.wakeTraces[wakeID], f.delTraces[d[0].GetId()]
	f.mu.Unlock()
	if !wakeTrace.IsValid() || delTrace != wakeTrace {
		t.Errorf("delivery trace %s, want the wake's %s", delTrace, wakeTrace)
	}
	// The process span ends when the wake's handling returns, just after its Delivery record
	// is acknowledged (which the test may see first).
	var process, client sdktrace.ReadOnlySpan
	f.eventually("the wake's process and client spans ended", 10*time.Second, func() bool {
		for _, s := range spans.Ended() {
			if s.SpanContext().TraceID() != wakeTrace {
				continue
			}
			switch {
			case s.Name() == "process push.wakes" && s.SpanKind() == trace.SpanKindConsumer:
				process = s
			case s.Name() == "apns push" && s.SpanKind() == trace.SpanKindClient:
				client = s
			}
		}
		return process != nil && client != nil
	})
	if process == nil || client == nil {
		t.Fatalf("want a process and a client span in the wake's trace, got process=%v client=%v", process != nil, client != nil)
	}
	if client.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Errorf("client span's parent is %s, want the process span %s", client.Parent().SpanID(), process.SpanContext().SpanID())
	}

	f.eventually("the unknown device's wake DROPPED", 20*time.Second, func() bool { return f.has("wake-unknown", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED) })
	if r := f.deliveriesOf("wake-unknown")[0].GetReason(); r != "unknown_device" {
		t.Errorf("drop reason %q, want unknown_device", r)
	}
	f.eventually("both offsets committed", 10*time.Second, func() bool { return f.committed() == 2 })
	stop()
}

func TestSameWakePushedOnce(t *testing.T) {
	f := newFixture(t)
	stop := f.start()
	tok := token(2)
	dev := f.register(tok, time.Now().Add(-time.Hour))
	wakeID := records.NewID()
	f.wake(dev, wakeID)
	f.wake(dev, wakeID) // a replay while the first may still be in flight
	f.eventually("an accepted and a duplicate record", 20*time.Second, func() bool {
		return f.has(wakeID, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) && f.has(wakeID, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED)
	})
	stop()

	// A new instance learns the delivered wakes from push.deliveries.
	f.start()
	f.wake(dev, wakeID)
	f.eventually("a second duplicate record", 20*time.Second, func() bool {
		n := 0
		for _, o := range f.outcomes(wakeID) {
			if o == wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED {
				n++
			}
		}
		return n == 2
	})
	if n := len(f.mock.PushesFor(tok)); n != 1 {
		t.Errorf("mock got %d pushes, want 1", n)
	}
	for _, d := range f.deliveriesOf(wakeID) {
		if d.GetOutcome() == wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED && d.GetReason() != "duplicate_wake" {
			t.Errorf("drop reason %q, want duplicate_wake", d.GetReason())
		}
	}
}

func TestUnregisteredToken(t *testing.T) {
	f := newFixture(t)
	f.start()
	now := time.Now()
	gone := token(3)
	goneDev := f.register(gone, now.Add(-time.Hour))
	invalidAt := now.Add(-time.Minute).Truncate(time.Second)
	f.mock.Unregister(gone, invalidAt)

	// This device registered again after APNs' timestamp: it must stay registered.
	back := token(4)
	backDev := f.register(back, now)
	f.mock.Unregister(back, now.Add(-time.Hour))

	f.wake(goneDev, "wake-gone")
	f.wake(backDev, "wake-back")
	f.eventually("PERMANENT deliveries", 20*time.Second, func() bool {
		return f.has("wake-gone", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT) &&
			f.has("wake-back", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_PERMANENT)
	})
	f.eventually("an UNREGISTERED record", 10*time.Second, func() bool { return len(f.senderRegistrations(goneDev)) == 1 })
	r := f.senderRegistrations(goneDev)[0]
	if r.GetState() != wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED || r.GetReason() != "apns:Unregistered" ||
		!r.GetProviderInvalidAt().AsTime().Equal(invalidAt) || r.GetToken() != gone || r.GetApp() != appID {
		t.Errorf("unregistration = %v, want UNREGISTERED apns:Unregistered invalid at %v", r, invalidAt)
	}
	if d := f.deliveriesOf("wake-gone")[0]; d.GetStatusCode() != 410 || d.GetReason() != "Unregistered" {
		t.Errorf("delivery status/reason = %d/%s", d.GetStatusCode(), d.GetReason())
	}

	// Later wakes for the dead device are not sent.
	f.wake(goneDev, "wake-gone-2")
	f.eventually("DROPPED after unregistration", 20*time.Second, func() bool {
		return f.has("wake-gone-2", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED)
	})
	if r := f.deliveriesOf("wake-gone-2")[0].GetReason(); r != "unregistered" {
		t.Errorf("drop reason %q, want unregistered", r)
	}
	f.eventually("all wakes committed", 10*time.Second, func() bool { return f.committed() == 3 })
	if regs := f.senderRegistrations(backDev); len(regs) != 0 {
		t.Errorf("the re-registered device was unregistered: %v", regs)
	}
}

// registerRegistration writes one registration of device (ACTIVE with the token, or
// UNREGISTERED without it, as ingest writes a client's unregistration), keyed like ingest does.
func (f *fixture) registerRegistration(device, regID, token string, source wakepushv1.RegistrationSource, state wakepushv1.RegistrationState, at time.Time) {
	f.produce(kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(device, regID), Msg: &wakepushv1.Registration{
		Id: records.NewID(), CreatedAt: records.Timestamp(at), DeviceId: device, RegistrationId: regID, App: appID,
		Platform: wakepushv1.Platform_PLATFORM_APNS, Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION,
		Token: token, State: state, Source: source, RegisteredAt: records.Timestamp(at),
	}})
}

// TestRegistrationsOfOneDevice: a device has a registration per party that registered its token.
// A client ending its own registration leaves the device's wakes to the others; a provider's
// dead-token answer ends every registration older than its timestamp (token node included),
// none made after it; a tombstone removes one registration and, with the last, the device.
func TestRegistrationsOfOneDevice(t *testing.T) {
	f := newFixture(t)
	f.start()
	now := time.Now()
	const (
		httpAPI = wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API
		adhoc   = wakepushv1.RegistrationSource_REGISTRATION_SOURCE_ADHOC
		tnode   = wakepushv1.RegistrationSource_REGISTRATION_SOURCE_TOKEN_NODE
	)
	active, gone := wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED
	reg := func(n byte) string { return strings.Repeat("0", 31) + string("0123456789abcdef"[n]) }

	// The victim's app, and someone who registered the same token and then unregistered its own
	// registration: the device still gets its wakes.
	tok := token(5)
	dev := "dev-" + tok[len(tok)-12:]
	f.registerRegistration(dev, reg(1), tok, httpAPI, active, now.Add(-time.Hour))
	f.registerRegistration(dev, reg(2), tok, httpAPI, active, now.Add(-time.Hour))
	f.registerRegistration(dev, reg(2), "", httpAPI, gone, now.Add(-50*time.Minute))
	f.wake(dev, "wake-shared")
	f.eventually("the wake accepted", 20*time.Second, func() bool { return f.has("wake-shared", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) })

	// The token dies; a Monal token node, an ad-hoc account and the app registered before, one
	// more ad-hoc account after the provider's timestamp.
	dead := token(6)
	deadDev := "dev-" + dead[len(dead)-12:]
	f.registerRegistration(deadDev, reg(3), dead, tnode, active, now.Add(-time.Hour))
	f.registerRegistration(deadDev, reg(4), dead, adhoc, active, now.Add(-time.Hour))
	f.registerRegistration(deadDev, reg(5), dead, httpAPI, active, now.Add(-time.Hour))
	f.registerRegistration(deadDev, reg(6), dead, adhoc, active, now)
	f.mock.Unregister(dead, now.Add(-time.Minute).Truncate(time.Second))
	f.wake(deadDev, "wake-dead")
	f.eventually("three UNREGISTERED records", 20*time.Second, func() bool { return len(f.senderRegistrations(deadDev)) == 3 })
	var ended []string
	for _, r := range f.senderRegistrations(deadDev) {
		ended = append(ended, r.GetRegistrationId())
		if r.GetReason() != "apns:Unregistered" || r.GetToken() != dead {
			t.Errorf("unregistration %v", r)
		}
	}
	slices.Sort(ended)
	if want := []string{reg(3), reg(4), reg(5)}; !slices.Equal(ended, want) {
		t.Fatalf("the sender ended registrations %v, want %v (not the one made after the timestamp)", ended, want)
	}

	// A tombstone of one registration: the device stays with the other; the last one's
	// tombstone removes the device (its wakes are then unknown_device).
	f.produce(kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(dev, reg(2))})
	f.wake(dev, "wake-after-tombstone")
	f.eventually("accepted after a tombstone of another registration", 20*time.Second, func() bool {
		return f.has("wake-after-tombstone", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED)
	})
	f.registerRegistration(dev, reg(1), "", httpAPI, gone, now)
	f.produce(kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(dev, reg(1))})
	f.wake(dev, "wake-no-device")
	f.eventually("dropped once every registration is gone", 20*time.Second, func() bool {
		return f.has("wake-no-device", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DROPPED)
	})
	if r := f.deliveriesOf("wake-no-device")[0].GetReason(); r != "unknown_device" {
		t.Errorf("drop reason %q, want unknown_device", r)
	}
	if n := len(f.mock.PushesFor(tok)); n != 2 {
		t.Errorf("%d pushes for the shared token, want 2", n)
	}
}

func TestRetriesUntilAPNsRecovers(t *testing.T) {
	f := newFixture(t)
	f.start()
	tok := token(5)
	dev := f.register(tok, time.Now().Add(-time.Hour))
	f.mock.SetFaults(apnsmock.Faults{Rate503: 1})
	f.wake(dev, "wake-503")
	f.eventually("two RETRY deliveries", 20*time.Second, func() bool {
		return len(f.deliveriesOf("wake-503")) >= 2
	})
	f.mock.SetFaults(apnsmock.Faults{})
	f.eventually("ACCEPTED", 20*time.Second, func() bool { return f.has("wake-503", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) })
	ds := f.deliveriesOf("wake-503")
	for i, d := range ds[:len(ds)-1] {
		if d.GetOutcome() != wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY || d.GetStatusCode() != 503 || d.GetReason() != "ServiceUnavailable" || d.GetAttempt() != uint32(i+1) {
			t.Errorf("delivery %d = %v, want RETRY 503 ServiceUnavailable attempt %d", i, d, i+1)
		}
	}
	if last := ds[len(ds)-1]; last.GetAttempt() != uint32(len(ds)) {
		t.Errorf("accepted attempt = %d, want %d", last.GetAttempt(), len(ds))
	}
	if n := len(f.mock.PushesFor(tok)); n != 1 {
		t.Errorf("mock accepted %d pushes, want 1", n)
	}
}

func TestDeadLettersAfterMaxAttempts(t *testing.T) {
	f := newFixture(t, "-sender-max-attempts=3")
	f.start()
	dev := f.register(token(6), time.Now().Add(-time.Hour))
	f.mock.SetFaults(apnsmock.Faults{Rate503: 1})
	f.wake(dev, "wake-dlq")
	f.eventually("a dead letter", 20*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.dlq) == 1
	})
	want := []wakepushv1.DeliveryOutcome{
		wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY,
		wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY,
		wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_DEAD_LETTERED,
	}
	f.eventually("three deliveries", 10*time.Second, func() bool { return len(f.outcomes("wake-dlq")) == 3 })
	if got := f.outcomes("wake-dlq"); !slices.Equal(got, want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
	f.mu.Lock()
	dl := f.dlq[0]
	f.mu.Unlock()
	var w wakepushv1.Wake
	if err := proto.Unmarshal(dl.GetValue(), &w); err != nil || w.GetId() != "wake-dlq" {
		t.Errorf("dead letter value: wake %q, err %v", w.GetId(), err)
	}
	if dl.GetStage() != "sender" || dl.GetTopic() != topics.Wakes || dl.GetReason() != "apns: 503 ServiceUnavailable after 3 attempts" {
		t.Errorf("dead letter stage/topic/reason = %s/%s/%q", dl.GetStage(), dl.GetTopic(), dl.GetReason())
	}
	f.eventually("the offset committed", 10*time.Second, func() bool { return f.committed() == 1 })
}

func TestConfigurationErrorPausesAndRecovers(t *testing.T) {
	f := newFixture(t, "-sender-config-pause=300ms")
	f.start()
	dev := f.register(token(7), time.Now().Add(-time.Hour))
	f.mock.RemoveKey(keyID)
	for i := range 5 {
		f.wake(dev, fmt.Sprint("wake-cfg-", i))
	}
	f.eventually("CONFIGURATION deliveries", 20*time.Second, func() bool {
		return f.has("wake-cfg-0", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_CONFIGURATION) ||
			f.has("wake-cfg-4", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_CONFIGURATION)
	})
	time.Sleep(time.Second) // ~3 pauses
	f.mu.Lock()
	configErrors := 0
	for _, d := range f.deliveries {
		if d.GetOutcome() == wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_CONFIGURATION {
			configErrors++
			if d.GetReason() != "InvalidProviderToken" {
				t.Errorf("configuration reason %q", d.GetReason())
			}
		}
	}
	f.mu.Unlock()
	// Not spinning: about one probe per pause (plus the wakes in flight when it began).
	if configErrors > 10 {
		t.Errorf("%d configuration errors in ~1s with a 300ms pause: the sender spins", configErrors)
	}
	// Restore the key: the paused wakes go out, none is lost.
	f.mock.AddKey(teamID, keyID, &f.key.PublicKey)
	for i := range 5 {
		id := fmt.Sprint("wake-cfg-", i)
		f.eventually(id+" ACCEPTED", 20*time.Second, func() bool { return f.has(id, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) })
	}
	f.mu.Lock()
	dlq := len(f.dlq)
	f.mu.Unlock()
	if dlq != 0 {
		t.Errorf("%d dead letters, want none", dlq)
	}
}

func TestPoisonWakeDeadLettered(t *testing.T) {
	f := newFixture(t)
	f.start()
	w := &kafka.Writer{Addr: kafka.TCP(f.kafka.Brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	err := w.WriteMessages(context.Background(), kafka.Message{Topic: topics.Wakes, Key: []byte("dev-x"), Value: []byte{0xff, 0xff, 0xff},
		Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(records.SchemaName(&wakepushv1.Wake{}))}}})
	if err != nil {
		t.Fatal(err)
	}
	f.eventually("a dead letter", 20*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.dlq) == 1
	})
	f.mu.Lock()
	dl := f.dlq[0]
	f.mu.Unlock()
	if !strings.HasPrefix(dl.GetReason(), "undecodable: ") || string(dl.GetValue()) != "\xff\xff\xff" || dl.GetStage() != "sender" {
		t.Errorf("dead letter reason %q value %x stage %s", dl.GetReason(), dl.GetValue(), dl.GetStage())
	}
	f.eventually("the offset committed", 10*time.Second, func() bool { return f.committed() == 1 })
}

// SIGTERM while pushes are in flight: they finish, their outcome is recorded and committed.
func TestDrainFinishesInFlightPushes(t *testing.T) {
	f := newFixture(t)
	stop := f.start()
	dev := f.register(token(8), time.Now().Add(-time.Hour))
	// Every push waits 700 ms for the mock's answer; the sender is stopped once all four are
	// waiting (a wake not yet fetched at the stop is rightly left for the next instance).
	var arrived atomic.Int32
	f.mock.SetFaults(apnsmock.Faults{Latency: func() time.Duration { arrived.Add(1); return 700 * time.Millisecond }})
	for i := range 4 {
		f.wake(dev, fmt.Sprint("wake-drain-", i))
	}
	f.eventually("four pushes waiting for the mock's answer", 20*time.Second, func() bool { return arrived.Load() == 4 })
	stop()
	for i := range 4 {
		id := fmt.Sprint("wake-drain-", i)
		if !f.has(id, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) {
			f.eventually(id+" ACCEPTED", 5*time.Second, func() bool { return f.has(id, wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) })
		}
	}
	if got := f.committed(); got != 4 {
		t.Errorf("committed %d wakes after the drain, want 4", got)
	}
}

// Two instances split the partitions, and each loads only its partitions' registrations; when
// one stops, the other is assigned its partition, loads that partition's registrations and
// delivers its wakes. Every wake is pushed once.
func TestInstancesSplitPartitions(t *testing.T) {
	f := newFixture(t)
	const n = 16
	devs := make([]string, n)
	for i := range n {
		devs[i] = f.register(token(300+i), time.Now().Add(-time.Hour))
	}
	stopA := f.start()
	f.start()
	for i, d := range devs {
		f.wake(d, fmt.Sprintf("split-%d", i))
	}
	f.eventually("every wake accepted by the two instances", 30*time.Second, func() bool {
		for i := range n {
			if !f.has(fmt.Sprintf("split-%d", i), wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) {
				return false
			}
		}
		return true
	})
	stopA()
	for i, d := range devs {
		f.wake(d, fmt.Sprintf("after-%d", i))
	}
	f.eventually("every wake accepted by the remaining instance", 60*time.Second, func() bool {
		for i := range n {
			if !f.has(fmt.Sprintf("after-%d", i), wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) {
				return false
			}
		}
		return true
	})
	for i := range n {
		if got := len(f.mock.PushesFor(token(300 + i))); got != 2 {
			t.Errorf("device %d: %d pushes, want 2 (one per wake)", i, got)
		}
		for _, w := range []string{"split-%d", "after-%d"} {
			if o := f.outcomes(fmt.Sprintf(w, i)); len(o) != 1 {
				t.Errorf("wake %s: outcomes %v, want one ACCEPTED", fmt.Sprintf(w, i), o)
			}
		}
	}
	f.eventually("all wakes committed", 20*time.Second, func() bool { return f.committed() == 2*n })
}
