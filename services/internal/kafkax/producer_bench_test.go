package kafkax_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// BenchmarkProduce is ingest's produce step: many concurrent callers, one event record each,
// acks=all, spans from an SDK that samples 1 % (parentbased_traceidratio 0.01: most records
// unsampled, their trace context still injected). The broker runs in this process, so ns/op
// includes its work; allocs/op and B/op are what to compare between producer versions.
//
//	cd services && go test -run '^$' -bench Produce -benchmem -count 5 ./internal/kafkax
func BenchmarkProduce(b *testing.B) {
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01)))))
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(b)}, Partitions: 12, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond, BatchSize: 100}
	p := startProducer(b, cfg, topics.Events)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tracer := otel.Tracer("bench")
	var n atomic.Int64
	b.SetParallelism(64) // ingest runs up to MaxInFlight handlers at once
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			dev := fmt.Sprintf("%032x", i%5000)
			rctx, span := tracer.Start(ctx, "publish")
			ev := &wakepushv1.PushEvent{Id: records.NewID(), DeviceId: dev, App: "im.example", Node: "node-1", MessageCount: 1}
			if err := p.Produce(rctx, kafkax.Record{Ctx: rctx, Topic: topics.Events, Key: dev, Msg: ev}); err != nil {
				b.Error(err)
			}
			span.End()
		}
	})
}
