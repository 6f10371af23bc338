package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
)

// BenchmarkRestore measures how long a partition takes to rebuild its state from push.wakes on
// assignment (partitionRunner.restore: offset lookup by time, read, decode, Engine.Restore),
// with one wake for each of 1M devices in the partition, all inside the window, as a busy
// partition would hold right after a burst that woke every device. The setup writes them to a
// kfake broker in batches of 10k records (as many produce requests as 900 KiB allow), shaped like the service's own records (the same headers, a
// trace context, one covered event id). Every iteration restores into a fresh engine.
//
//	go test -run '^$' -bench Restore -benchtime 3x ./services/coalescer
func BenchmarkRestore(b *testing.B) {
	const devices = 1_000_000
	broker := stacktest.Kafka(b)
	const interval = time.Hour // every wake is still inside its interval when the restore runs
	cfg, err := loadSettings(testArgs(broker, writeAppsFile(b, interval), stacktest.FreeAddr(b)))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := cfg.Kafka.EnsureTopics(ctx, topics.Events, topics.Wakes, topics.EventsDLQ); err != nil {
		b.Fatal(err)
	}

	began := time.Now()
	w := &kafka.Writer{
		Addr:         kafka.TCP(broker),
		Topic:        topics.Wakes,
		Balancer:     kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 }),
		RequiredAcks: kafka.RequireOne,
		BatchSize:    10_000,
		BatchBytes:   900 << 10, // under the broker's message.max.bytes (1 MiB)
		BatchTimeout: 10 * time.Millisecond,
	}
	defer w.Close()
	app := appOf(interval)
	schema := []byte(records.SchemaName(&wakepushv1.Wake{}))
	now := time.Now()
	msgs := make([]kafka.Message, 0, 10_000)
	for i := range devices {
		dev := fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, uint64(i))
		ev := uuid.Must(uuid.NewV7()).String()
		at := now.Add(-time.Duration(devices-i) * time.Microsecond)
		rec := wakeRecord(&coalesce.WakeDecision{
			ID: coalesce.WakeID(dev, ev, ev, 1, at.UnixNano()), DeviceID: dev, App: app, Reason: coalesce.Leading, At: at,
			EventCount: 1, EventIDs: []string{ev}, FirstEventAt: at, LastEventAt: at,
		}, nil)
		value, err := proto.Marshal(rec)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(dev), Value: value, Headers: []kafka.Header{
			{Key: records.HeaderContentType, Value: []byte(records.ContentType)},
			{Key: records.HeaderSchema, Value: schema},
			{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		}})
		if len(msgs) == cap(msgs) || i == devices-1 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	b.Logf("setup: %d wakes written to %s/0 in %s", devices, topics.Wakes, time.Since(began).Round(time.Millisecond))

	c, err := newCoalescer(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	var heap uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		p := newPartitionRunner(c, nil, 0)
		eng, err := coalesce.New(coalesce.Config{MinIntervals: cfg.intervals(), DedupWindow: cfg.window()})
		if err != nil {
			b.Fatal(err)
		}
		p.eng = eng
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		if err := p.restore(ctx, kafka.FirstOffset); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := p.eng.Devices(); got != devices {
			b.Fatalf("%d devices restored, want %d", got, devices)
		}
		if got := p.eng.SeenIDs(); got != devices {
			b.Fatalf("%d event ids restored, want %d", got, devices)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = after.HeapAlloc - before.HeapAlloc
		p.close()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restore")
	b.ReportMetric(float64(devices)*float64(b.N)/b.Elapsed().Seconds(), "wakes/s")
	b.ReportMetric(float64(heap)/devices, "B/device-with-dedup")
}
