package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// fakeClock is a coalesce.Clock that moves only when Advance is called; its timers fire then.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	nows   atomic.Int64 // calls of Now: tells a test that the runner went through a step
}

func (c *fakeClock) Now() time.Time {
	c.nows.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) coalesce.Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

// Advance moves the clock to now+d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.fireLocked()
	}
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	at    time.Time
	armed bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	select { // Go ≥ 1.23 semantics: no stale fire after Reset
	case <-t.ch:
	default:
	}
	t.at, t.armed = t.c.now.Add(d), true
	t.fireLocked()
}

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.armed = false
}

func (t *fakeTimer) fireLocked() {
	if t.armed && !t.c.now.Before(t.at) {
		t.armed = false
		select {
		case t.ch <- t.c.now:
		default:
		}
	}
}

// captureProducer keeps what the runner produces.
type captureProducer struct {
	mu    sync.Mutex
	wakes []*wakepushv1.Wake
}

func (p *captureProducer) Produce(_ context.Context, recs ...kafkax.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range recs {
		if w, ok := r.Msg.(*wakepushv1.Wake); ok {
			p.wakes = append(p.wakes, proto.Clone(w).(*wakepushv1.Wake))
		}
	}
	return nil
}

func (p *captureProducer) got() []*wakepushv1.Wake {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.wakes)
}

type nopCommitter struct{}

func (nopCommitter) CommitOffsets(map[string]map[int]int64) error { return nil }

// TestRunnerFakeClock drives one partition runner (events from a kfake broker, wakes captured)
// with a fake clock: the leading wake is decided at the clock's now, no trailing wake goes out
// a millisecond before the interval ends however long the test waits, and the trailing wake
// goes out when the clock reaches the end of the interval, stamped exactly with it.
func TestRunnerFakeClock(t *testing.T) {
	broker := stacktest.Kafka(t)
	const interval = 10 * time.Second
	cfg, err := loadSettings(testArgs(broker, writeAppsFile(t, interval), stacktest.FreeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	newEvents(t, broker) // creates the topics
	w := &kafka.Writer{Addr: kafka.TCP(broker), Topic: topics.Events, Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 }),
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { w.Close() })
	send := func(ev *wakepushv1.PushEvent) {
		t.Helper()
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMessages(context.Background(), kafka.Message{Key: []byte(ev.DeviceId), Value: b,
			Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(records.SchemaName(ev))}}}); err != nil {
			t.Fatal(err)
		}
	}

	clock := &fakeClock{now: time.Now().Truncate(time.Millisecond)}
	out := &captureProducer{}
	c, err := newCoalescer(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), out)
	if err != nil {
		t.Fatal(err)
	}
	c.clock = clock
	p := newPartitionRunner(c, nopCommitter{}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx, kafka.FirstOffset) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		p.close()
	}()
	waitWakes := func(n int) []*wakepushv1.Wake {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(out.got()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d wakes within 10s, want %d", len(out.got()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return out.got()
	}
	// waitStep waits until the runner handled something after the last call (it reads the clock
	// once per handled batch), then lets it finish the step.
	waitStep := func(since int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for clock.nows.Load() <= since {
			if time.Now().After(deadline) {
				t.Fatal("the runner handled nothing within 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
	}

	const dev = "0123456789abcdef0123456789abcdef"
	app := appOf(interval)
	start := clock.Now()
	e1 := event(records.NewID(), dev, app, false)
	send(e1)
	w1 := waitWakes(1)[0]
	if w1.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING || !w1.CreatedAt.AsTime().Equal(start) {
		t.Fatalf("leading wake %v, want one created at the fake now %s", w1, start)
	}

	clock.Advance(3 * time.Second)
	n := clock.nows.Load()
	e2 := event(records.NewID(), dev, app, false)
	send(e2)
	waitStep(n)
	clock.Advance(interval - 3*time.Second - time.Millisecond) // 1 ms before the interval ends
	time.Sleep(300 * time.Millisecond)
	if got := out.got(); len(got) != 1 {
		t.Fatalf("wake before the interval ended: %v", got[1:])
	}
	clock.Advance(time.Millisecond)
	w2 := waitWakes(2)[1]
	if w2.Reason != wakepushv1.WakeReason_WAKE_REASON_TRAILING || !slices.Equal(w2.EventIds, []string{e2.Id}) {
		t.Fatalf("second wake %v, want a trailing wake covering e2", w2)
	}
	if want := start.Add(interval); !w2.CreatedAt.AsTime().Equal(want) {
		t.Errorf("trailing wake created at %s, want exactly the end of the interval %s", w2.CreatedAt.AsTime(), want)
	}

	// Nothing pending: when the next interval ends the device is forgotten, and a new event
	// is a leading wake again.
	clock.Advance(interval)
	time.Sleep(200 * time.Millisecond)
	n = clock.nows.Load()
	e3 := event(records.NewID(), dev, app, false)
	send(e3)
	waitStep(n)
	w3 := waitWakes(3)[2]
	if w3.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING || !w3.CreatedAt.AsTime().Equal(start.Add(2*interval)) {
		t.Errorf("third wake %v, want a leading wake at %s", w3, start.Add(2*interval))
	}
	if got := out.got(); len(got) != 3 {
		t.Errorf("%d wakes, want 3", len(got))
	}
}

// TestRestoreReachesFirstUncommittedEvent hands a partition over long after its last commit
// (minutes: a slow handover, a stalled consumer): the previous owner woke e1 but never
// committed past it. The window (interval + slack) ends long after that wake, yet the new owner
// must read it back, because the replay starts at e1: e1 is a duplicate, e2 (never covered) is
// woken at once, and nothing else is sent. The group's position is either a commit at e1's
// offset or none at all (kafka.FirstOffset).
func TestRestoreReachesFirstUncommittedEvent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset int64
	}{{"committed", 0}, {"never committed", kafka.FirstOffset}} {
		t.Run(tc.name, func(t *testing.T) { testLateHandover(t, tc.offset) })
	}
}

func testLateHandover(t *testing.T, offset int64) {
	broker := stacktest.Kafka(t)
	const interval = 10 * time.Second
	cfg, err := loadSettings(testArgs(broker, writeAppsFile(t, interval), stacktest.FreeAddr(t)))
	if err != nil {
		t.Fatal(err)
	}
	newEvents(t, broker) // creates the topics
	w := &kafka.Writer{Addr: kafka.TCP(broker), Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 }),
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { w.Close() })
	write := func(topic string, at time.Time, m proto.Message, key string) {
		t.Helper()
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMessages(context.Background(), kafka.Message{Topic: topic, Key: []byte(key), Value: b, Time: at,
			Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(records.SchemaName(m))}}}); err != nil {
			t.Fatal(err)
		}
	}

	app := appOf(interval)
	const devA, devB, devC = "0000000000000000000000000000000a", "0000000000000000000000000000000b", "0000000000000000000000000000000c"
	t0 := time.Now().Add(-2 * time.Minute).Truncate(time.Millisecond)
	if t0.After(time.Now().Add(-cfg.window() - cfg.RestoreSlack)) {
		t.Fatal("the handover is not later than the window: the test proves nothing")
	}
	e1 := event(records.NewID(), devA, app, false)
	e1.AcceptedAt = records.Timestamp(t0)
	write(topics.Events, t0, e1, devA)
	w1 := &wakepushv1.Wake{Id: records.NewID(), DeviceId: devA, App: app, Reason: wakepushv1.WakeReason_WAKE_REASON_LEADING,
		CreatedAt: records.Timestamp(t0.Add(10 * time.Millisecond)), EventIds: []string{e1.Id}, EventCount: 1}
	write(topics.Wakes, t0.Add(10*time.Millisecond), w1, devA)
	e2 := event(records.NewID(), devB, app, false)
	e2.AcceptedAt = records.Timestamp(t0.Add(20 * time.Millisecond))
	write(topics.Events, t0.Add(20*time.Millisecond), e2, devB)

	out := &captureProducer{}
	c, err := newCoalescer(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), out)
	if err != nil {
		t.Fatal(err)
	}
	p := newPartitionRunner(c, nopCommitter{}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx, offset) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		p.close()
	}()

	e3 := event(records.NewID(), devC, app, false)
	write(topics.Events, time.Now(), e3, devC)
	deadline := time.Now().Add(15 * time.Second)
	for len(out.got()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // anything else decided with them
	got := map[string][]string{}
	for _, w := range out.got() {
		if w.Reason != wakepushv1.WakeReason_WAKE_REASON_LEADING {
			t.Errorf("wake %v: want leading", w)
		}
		got[w.DeviceId] = append(got[w.DeviceId], w.EventIds...)
	}
	want := map[string][]string{devB: {e2.Id}, devC: {e3.Id}}
	if len(got) != len(want) || !slices.Equal(got[devB], want[devB]) || !slices.Equal(got[devC], want[devC]) {
		t.Errorf("wakes after the late handover cover %v, want %v (e1 is covered by a wake the new owner must read back)", got, want)
	}
}
