package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wakepush/wakepush/services/ingest/ratelimit"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	l := ratelimit.New(ratelimit.Rate{PerSecond: 1, Burst: 1}, ratelimit.Options{Name: "test", MaxKeys: 2, Shards: 1})
	ratelimit.New(ratelimit.Rate{PerSecond: 1, Burst: 1}, ratelimit.Options{Name: "other", MaxKeys: 2, Shards: 1}).AllowAt("x", t0)
	for _, c := range []struct {
		key string
		at  time.Duration
	}{{"a", 0}, {"a", 0}, {"b", 0}, {"c", 0}, {"d", 500 * time.Millisecond}, {"e", 3 * time.Second}} {
		l.AllowAt(c.key, t0.Add(c.at))
	}
	// The second a is denied; c evicts a (no bucket full: active); d evicts b (0.5 tokens: active);
	// e at +3 s sweeps c and d (idle ≥ Burst/PerSecond = 1 s) and is the only key left.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				points = d.DataPoints
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			}
			for _, dp := range points {
				if lim, _ := dp.Attributes.Value("limiter"); lim.AsString() != "test" {
					continue
				}
				key := m.Name
				if r, ok := dp.Attributes.Value("reason"); ok {
					key += " " + r.AsString()
				}
				got[key] = dp.Value
			}
		}
	}
	want := map[string]int64{
		"wakepush.ingest.ratelimit.keys":             1,
		"wakepush.ingest.ratelimit.denied":           1,
		"wakepush.ingest.ratelimit.evictions idle":   2,
		"wakepush.ingest.ratelimit.evictions full":   0,
		"wakepush.ingest.ratelimit.evictions active": 2,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}
