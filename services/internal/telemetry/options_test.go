package telemetry

import (
	"context"
	"fmt"
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
