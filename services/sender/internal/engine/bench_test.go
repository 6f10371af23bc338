package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/sender/internal/dedup"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

// sliceReader hands out its messages in order, then blocks; it remembers the highest
// committed offset + 1 per partition.
type sliceReader struct {
	msgs []kafka.Message
	next atomic.Int64

	mu        sync.Mutex
	committed map[int]int64
	done      chan struct{}
	want      int64
}

func (r *sliceReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	i := r.next.Add(1) - 1
	if int(i) < len(r.msgs) {
		return r.msgs[i], nil
	}
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (r *sliceReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var total int64
	for _, m := range msgs {
		r.committed[m.Partition] = max(r.committed[m.Partition], m.Offset+1)
	}
	for _, c := range r.committed {
		total += c
	}
	if total == r.want && r.done != nil {
		close(r.done)
		r.done = nil
	}
	return nil
}

// acceptAll accepts every push at once.
type acceptAll struct{}

func (acceptAll) Send(context.Context, provider.Target, *wakepushv1.Wake) provider.Result {
	return provider.Result{Action: provider.Accepted, StatusCode: 200, MessageID: "5a1f5e2c-8d4b-4f0e-9c1a-1b2c3d4e5f60"}
}
func (acceptAll) Close() {}

// encodingProducer encodes records as the real producer does, without a broker.
type encodingProducer struct{ bytes atomic.Int64 }

func (p *encodingProducer) Produce(_ context.Context, recs ...kafkax.Record) error {
	for _, r := range recs {
		b, err := proto.Marshal(r.Msg)
		if err != nil {
			return err
		}
		p.bytes.Add(int64(len(b)))
	}
	return nil
}

// BenchmarkEngine is the engine's own cost per wake (decode, dedup, registry lookup, spans,
// metrics, delivery record, commit tracking) with an instant provider and a producer that only
// encodes: the part of the sender's CPU per push that is neither apns2 nor kafka-go. Tracing
// and metrics are set up as a sender without an exporter has them (telemetry.Setup).
func BenchmarkEngine(b *testing.B) {
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample()))))
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())))
	b.Cleanup(func() {
		otel.SetTracerProvider(sdktrace.NewTracerProvider())
		otel.SetMeterProvider(sdkmetric.NewMeterProvider())
	})
	a, err := apps.Parse([]byte("apps:\n  - id: im.x\n    platform: apns\n    apns: {team_id: TEAM000001, key_id: KEY0000001, key_file: /nonexistent/key.p8}\n"), "test")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tb := registry.NewLocal(log)
	const devices = 10000
	for i := range devices {
		tb.Apply(i%4, &wakepushv1.Registration{DeviceId: fmt.Sprintf("dev%06d", i), RegistrationId: fmt.Sprintf("%032x", i+1), App: "im.x",
			Platform: wakepushv1.Platform_PLATFORM_APNS, Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION,
			Token: fmt.Sprintf("%064x", i), State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
			CreatedAt: records.Timestamp(time.Now().Add(-time.Hour))})
	}
	msgs := make([]kafka.Message, b.N)
	for i := range msgs {
		dev := fmt.Sprintf("dev%06d", i%devices)
		w, _ := proto.Marshal(&wakepushv1.Wake{Id: records.NewID(), DeviceId: dev, App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS,
			CreatedAt: records.Timestamp(time.Now()), EventIds: []string{records.NewID()}})
		msgs[i] = kafka.Message{Topic: topics.Wakes, Partition: i % 4, Offset: int64(i / 4), HighWaterMark: int64(b.N / 4), Key: []byte(dev), Value: w,
			Headers: []kafka.Header{
				{Key: records.HeaderContentType, Value: []byte(records.ContentType)},
				{Key: records.HeaderSchema, Value: []byte("wakepush.v1.Wake")},
				{Key: "traceparent", Value: fmt.Appendf(nil, "00-%032x-%016x-00", i+1, i+1)},
			}}
	}
	r := &sliceReader{msgs: msgs, committed: map[int]int64{}, done: make(chan struct{}), want: int64(b.N)}
	done := r.done
	e, err := New(Config{Concurrency: 64, MaxAttempts: 3, RetryMin: time.Millisecond, RetryMax: time.Millisecond, ConfigPause: time.Second,
		CatchUpTimeout: time.Second, DrainTimeout: 10 * time.Second, CommitInterval: time.Millisecond}, Deps{
		Log: log, Apps: a, Registry: caughtUpTable{tb}, Producer: &encodingProducer{}, Dedup: dedup.New(1 << 16),
		Providers: map[wakepushv1.Platform]provider.Provider{wakepushv1.Platform_PLATFORM_APNS: acceptAll{}},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ctx, r) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatal("wakes not all committed")
	}
	b.StopTimer()
	// CPU per wake, what the machine's other load changes least (ns/op is wall time).
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/wake")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
