package telemetry

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestOptionCache(t *testing.T) {
	type labels struct{ app, reason string }
	built := 0
	c := NewOptionCache(func(l labels) []attribute.KeyValue {
		built++
		return []attribute.KeyValue{attribute.String("app", l.app), attribute.String("reason", l.reason)}
	})
	reader := sdkmetric.NewManualReader()
	counter, err := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t").Int64Counter("c")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		counter.Add(ctx, 1, c.Get(labels{"im.a", "x"}))
		counter.Add(ctx, 2, c.Get(labels{"im.b", "y"}))
	}
	if built != 2 || c.Len() != 2 {
		t.Errorf("built %d sets, cached %d; want 2, 2", built, c.Len())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, dp := range rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Sum[int64]).DataPoints {
		app, _ := dp.Attributes.Value("app")
		reason, _ := dp.Attributes.Value("reason")
		got[app.AsString()+"/"+reason.AsString()] = dp.Value
	}
	if len(got) != 2 || got["im.a/x"] != 3 || got["im.b/y"] != 6 {
		t.Errorf("series %v, want im.a/x=3 im.b/y=6", got)
	}

	// Past the bound nothing more is kept, and options are still right.
	for i := range MaxCachedOptions + 10 {
		c.Get(labels{"im.c", fmt.Sprint(i)})
	}
	if c.Len() != MaxCachedOptions {
		t.Errorf("cached %d, want the bound %d", c.Len(), MaxCachedOptions)
	}
}

func TestCounts(t *testing.T) {
	type labels struct{ source, code string }
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t")
	build := func(l labels) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("source", l.source), attribute.String("code", l.code)}
	}
	counter, err := NewCounts(meter, "c", "a counter", false, build)
	if err != nil {
		t.Fatal(err)
	}
	gauge, err := NewCounts(meter, "g", "an up-down counter", true, func(s string) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("source", s)}
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				counter.Add(labels{"http", "ok"}, 1)
				counter.Add(labels{"xmpp", "gone"}, 2)
				gauge.Add("http", 1)
				gauge.Add("http", -1)
			}
		})
	}
	gauge.Add("xmpp", 3)
	wg.Wait()
	// A second Counts of the same name (another instance of a component) adds to the series.
	counter2, err := NewCounts(meter, "c", "a counter", false, build)
	if err != nil {
		t.Fatal(err)
	}
	counter2.Add(labels{"http", "ok"}, 5)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		sum := m.Data.(metricdata.Sum[int64])
		for _, dp := range sum.DataPoints {
			src, _ := dp.Attributes.Value("source")
			code, _ := dp.Attributes.Value("code")
			got[m.Name+" "+src.AsString()+" "+code.AsString()] = fmt.Sprintf("%d monotonic=%v %v", dp.Value, sum.IsMonotonic, sum.Temporality)
		}
	}
	want := map[string]string{
		"c http ok":   "8005 monotonic=true CumulativeTemporality",
		"c xmpp gone": "16000 monotonic=true CumulativeTemporality",
		"g http ":     "0 monotonic=false CumulativeTemporality",
		"g xmpp ":     "3 monotonic=false CumulativeTemporality",
	}
	if !maps.Equal(got, want) {
		t.Errorf("series %v, want %v", got, want)
	}
}

// BenchmarkCounts: Counts.Add against a synchronous counter's Add with a cached attribute set.
func BenchmarkCounts(b *testing.B) {
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())).Meter("t")
	build := func(s string) []attribute.KeyValue { return []attribute.KeyValue{attribute.String("source", s)} }
	b.Run("counts", func(b *testing.B) {
		c, err := NewCounts(meter, "c", "", false, build)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			c.Add("xmpp_component", 1)
		}
	})
	b.Run("sync-counter", func(b *testing.B) {
		c, err := meter.Int64Counter("s")
		if err != nil {
			b.Fatal(err)
		}
		opts := NewOptionCache(build)
		ctx := context.Background()
		for b.Loop() {
			c.Add(ctx, 1, opts.Get("xmpp_component"))
		}
	})
}
