package engine

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/sender/internal/dedup"
	"github.com/wakepush/wakepush/services/sender/internal/provider"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

// The consumer lag and wake age the alert rules read (deploy/monitoring/rules): a wake fetched
// 41 records behind its partition's high watermark and created 90 s before the sender handles it;
// and the per-wake counters (deliveries by outcome, wakes in flight) it leaves behind.
func TestLagAndWakeAgeMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	a, err := apps.Parse([]byte("apps:\n  - id: im.x\n    platform: apns\n    apns: {team_id: TEAM000001, key_id: KEY0000001, key_file: /nonexistent/key.p8}\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tb := registry.NewLocal(log)
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	tb.Apply(3, &wakepushv1.Registration{DeviceId: "d1", RegistrationId: "00000000000000000000000000000001", App: "im.x",
		Platform: wakepushv1.Platform_PLATFORM_APNS, Token: "aa", State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
		CreatedAt: records.Timestamp(now.Add(-time.Hour))})
	e, err := New(Config{Concurrency: 1, MaxAttempts: 3, RetryMin: time.Millisecond, RetryMax: time.Millisecond, ConfigPause: time.Second,
		CatchUpTimeout: time.Second, DrainTimeout: time.Second}, Deps{
		Log: log, Apps: a, Registry: caughtUpTable{tb}, Producer: &recordingProducer{}, Dedup: dedup.New(16),
		Providers: map[wakepushv1.Platform]provider.Provider{wakepushv1.Platform_PLATFORM_APNS: &envProvider{dead: wakepushv1.Environment_ENVIRONMENT_SANDBOX}},
		Now:       func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := proto.Marshal(&wakepushv1.Wake{Id: "w1", DeviceId: "d1", App: "im.x", Platform: wakepushv1.Platform_PLATFORM_APNS,
		CreatedAt: records.Timestamp(now.Add(-90 * time.Second))})
	r := &oneWake{committed: make(chan struct{}), msg: &kafka.Message{Topic: topics.Wakes, Partition: 3, Offset: 58, HighWaterMark: 100,
		Key: []byte("d1"), Value: w, Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v1.Wake")}}}}
	var rm0 metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm0); err != nil {
		t.Fatal(err)
	}
	deliveries0, inflight0 := sumOf(rm0, "wakepush.sender.deliveries"), sumOf(rm0, "wakepush.sender.inflight")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx, r) }()
	select {
	case <-r.committed:
	case <-time.After(10 * time.Second):
		t.Fatal("the wake was not finished")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var sawLag, sawAge bool
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "wakepush.sender.consumer.lag":
				g := m.Data.(metricdata.Gauge[int64])
				if len(g.DataPoints) != 1 {
					t.Fatalf("lag: %d points, want 1", len(g.DataPoints))
				}
				dp := g.DataPoints[0]
				topic, _ := dp.Attributes.Value("messaging.destination.name")
				part, _ := dp.Attributes.Value("messaging.destination.partition.id")
				if dp.Value != 41 || topic.AsString() != topics.Wakes || part.AsString() != "3" {
					t.Errorf("lag = %d on %s/%s, want 41 on %s/3", dp.Value, topic.AsString(), part.AsString(), topics.Wakes)
				}
				sawLag = true
			case "wakepush.sender.wake.age":
				h := m.Data.(metricdata.Histogram[float64])
				if len(h.DataPoints) != 1 || h.DataPoints[0].Count != 1 || h.DataPoints[0].Sum != 90 {
					t.Errorf("wake age: %+v, want one observation of 90 s", h.DataPoints)
				}
				sawAge = true
			}
		}
	}
	if !sawLag || !sawAge {
		t.Errorf("lag reported %v, wake age reported %v; want both", sawLag, sawAge)
	}
	// Engines of earlier tests report here too (through the global delegate, set first by this
	// test), so the test's own wake is the change since the collection before it.
	if d := sumOf(rm, "wakepush.sender.deliveries"); !d.IsMonotonic || accepted(d)-accepted(deliveries0) != 1 {
		t.Errorf("deliveries of im.x accepted: +%d (monotonic %v), want +1", accepted(d)-accepted(deliveries0), d.IsMonotonic)
	}
	if in := sumOf(rm, "wakepush.sender.inflight"); in.IsMonotonic || len(in.DataPoints) == 0 || total(in) != total(inflight0) {
		t.Errorf("inflight: %d before, %d after the wake (%d series, monotonic %v), want an up-down sum that counted the wake and is back where it was",
			total(inflight0), total(in), len(in.DataPoints), in.IsMonotonic)
	}
}

// sumOf is the int64 sum called name in rm (empty when absent).
func sumOf(rm metricdata.ResourceMetrics, name string) metricdata.Sum[int64] {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				s, _ := m.Data.(metricdata.Sum[int64])
				return s
			}
		}
	}
	return metricdata.Sum[int64]{}
}

// accepted is the im.x/accepted series of wakepush.sender.deliveries (0 when absent).
func accepted(s metricdata.Sum[int64]) int64 {
	for _, dp := range s.DataPoints {
		app, _ := dp.Attributes.Value("app")
		outcome, _ := dp.Attributes.Value("outcome")
		if app.AsString() == "im.x" && outcome.AsString() == "accepted" {
			return dp.Value
		}
	}
	return 0
}

// total is the sum of every series.
func total(s metricdata.Sum[int64]) int64 {
	var n int64
	for _, dp := range s.DataPoints {
		n += dp.Value
	}
	return n
}
