package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

// TestUnregistrationRetention (issue 12 item 6): N devices registered, M of them unregistered.
// Until the retention has passed, ingest's set holds the M unregistrations and the sender's
// table all N devices. After it, ingest writes a tombstone per unregistration: ingest's set is
// empty, the sender's table holds N−M devices and its memory drops accordingly, and once the
// broker compacts the topic, it holds one record per active registration.
func TestUnregistrationRetention(t *testing.T) {
	// Enough devices that what is measured (a heap delta) is mostly them: at 2,000 the fixed
	// parts (a map's first buckets, a page of 1,024 entries) and the runtime's own noise took a
	// quarter of the allowance, and a CI run measured 0.26 MB against 0.20 allowed.
	const (
		n         = 20000
		m         = 12000
		retention = 30 * 24 * time.Hour
	)
	broker := stacktest.KafkaBroker(t)
	// One partition (compaction keeps each partition's last batch whatever it holds, so one
	// partition makes the count exact); tombstones are dropped by the first compaction.
	if err := broker.Cluster().CreateTopic(topics.Registrations, 1, map[string]string{"cleanup.policy": "compact", "delete.retention.ms": "0"}); err != nil {
		t.Fatal(err)
	}
	cfg := &kafkax.Config{Brokers: []string{broker.Addr()}, Partitions: 1, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond}
	prod, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t0 := time.Now().Add(-40 * 24 * time.Hour)
	record := func(i int, state wakepushv1.RegistrationState, at time.Time) kafkax.Record {
		dev, reg := fmt.Sprintf("%032x", i), fmt.Sprintf("%032x", i+1<<40)
		r := &wakepushv1.Registration{Id: records.NewID(), CreatedAt: records.Timestamp(at), DeviceId: dev, RegistrationId: reg,
			App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS, State: state, RegisteredAt: records.Timestamp(t0)}
		if state == wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE {
			r.Token = fmt.Sprintf("%064x", i)
		}
		return kafkax.Record{Topic: topics.Registrations, Key: records.RegistrationKey(dev, reg), Msg: r}
	}
	var recs []kafkax.Record
	for i := range n {
		recs = append(recs, record(i, wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, t0))
	}
	for i := range m {
		recs = append(recs, record(i, wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED, t0.Add(time.Hour)))
	}
	if err := prod.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	recs = nil

	log := slog.New(slog.DiscardHandler)
	// The memory a reader instance (ingest's set and a sender's table) holds for the whole
	// topic before any expiry.
	fresh := startReaders(t, cfg, log)
	waitFor(t, "the registrations read", func() bool { return fresh.table.Len() == n && fresh.set.Len() == m })
	full := retainedBytes(&fresh)

	// A running instance through the expiry.
	run := startReaders(t, cfg, log)
	waitFor(t, "the registrations read", func() bool { return run.table.Len() == n && run.set.Len() == m })
	// Not yet: one minute before the retention ends nothing expires.
	if k, err := run.set.Expire(ctx, prod, retention, t0.Add(time.Hour+retention-time.Minute)); k != 0 || err != nil {
		t.Fatalf("Expire before the retention: %d, %v", k, err)
	}
	k, err := run.set.Expire(ctx, prod, retention, t0.Add(time.Hour+retention))
	if err != nil || k != m {
		t.Fatalf("Expire = %d, %v; want %d tombstones", k, err, m)
	}
	waitFor(t, "the tombstones read", func() bool { return run.table.Len() == n-m && run.set.Len() == 0 })

	// Compaction: the topic keeps one record per active registration. Compaction keeps a
	// partition's last batch as it is: let it be one more registration.
	if err := prod.Produce(ctx, record(n, wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, time.Now())); err != nil {
		t.Fatal(err)
	}
	active := n - m + 1
	waitFor(t, "the last registration read", func() bool { return run.table.Len() == active })
	before := countRecords(t, ctx, cfg)
	broker.Cluster().Compact()
	compacted := countRecords(t, ctx, cfg)
	t.Logf("push.registrations: %d records before compaction, %d after (%d active registrations)", before, compacted, active)
	if before != n+2*m+1 || compacted != active {
		t.Fatalf("records before/after compaction = %d/%d, want %d/%d", before, compacted, n+2*m+1, active)
	}

	// The running instance gave the memory of the expired devices back.
	after := retainedBytes(&run)
	want := full*float64(active)/float64(n) + 0.15*full // plus the readers' own structures
	t.Logf("memory held by ingest's set and a sender's table: %.2f MB for %d devices (%d unregistered, %.0f B per device); "+
		"%.2f MB for the %d active after expiry (want at most %.2f MB)", full/1e6, n, m, full/n, after/1e6, active, want/1e6)
	if after > want {
		t.Errorf("after expiry the instance holds %.2f MB, want at most %.2f MB", after/1e6, want/1e6)
	}

	// A reader starting now (a new ingest or sender instance) rebuilds the same state.
	late := startReaders(t, cfg, log)
	waitFor(t, "the compacted topic read", func() bool { return late.table.Len() == active })
	if err := late.table.WaitCaughtUp(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if late.table.Len() != active || late.set.Len() != 0 {
		t.Fatalf("a new reader holds %d devices and %d unregistrations, want %d and 0", late.table.Len(), late.set.Len(), active)
	}
	late.stop()
}

// readers are what one instance keeps of push.registrations: ingest's set of unregistrations
// and a sender's registration table, each following the topic.
type readers struct {
	set   *devices.Set
	table *registry.Table
	stop  func()
}

func startReaders(t *testing.T, cfg *kafkax.Config, log *slog.Logger) *readers {
	t.Helper()
	r := &readers{set: devices.New(), table: mustTable(t, cfg)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.set.Run(ctx, cfg, log) })
	wg.Go(func() { _ = r.table.Run(ctx) })
	r.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
	return r
}

// retainedBytes stops r's readers and measures the heap that r's set and table hold (the heap
// with them minus the heap without them), then drops them.
func retainedBytes(r **readers) float64 {
	(*r).stop()
	with := heapInUse()
	runtime.KeepAlive(*r)
	*r = nil
	return float64(with) - float64(heapInUse())
}

func mustTable(t *testing.T, cfg *kafkax.Config) *registry.Table {
	t.Helper()
	tb := registry.New(cfg, slog.New(slog.DiscardHandler), registry.Options{})
	tb.Assign([]int{0}) // the topic's one partition
	return tb
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countRecords reads partition 0 of the registrations topic from its first offset to its end.
func countRecords(t *testing.T, ctx context.Context, cfg *kafkax.Config) int {
	t.Helper()
	conn, err := kafka.DialLeader(ctx, "tcp", cfg.Brokers[0], topics.Registrations, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: topics.Registrations, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		count++
		if msg.Offset >= last-1 {
			return count
		}
	}
}
