package component_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wakepush/wakepush/services/ingest/component"
)

// connections reads wakepush.ingest.component.connections per server (-1: no series).
func connections(t *testing.T, reader *sdkmetric.ManualReader, server string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "wakepush.ingest.component.connections" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if v, _ := dp.Attributes.Value("server"); v.AsString() == server {
					return dp.Value
				}
			}
		}
	}
	return -1
}

// A configured connection is a series from the start: 0 until it is up (the alert
// WakepushComponentDisconnected reads it), 1 while connected.
func TestConnectionsMetric(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	if _, err := component.New(component.Config{Addr: "127.0.0.1:1", JID: jid, Secret: secret}); err != nil {
		t.Fatal(err)
	}
	if got := connections(t, reader, "127.0.0.1:1"); got != 0 {
		t.Fatalf("connections of a never connected component = %d, want 0", got)
	}

	srv := newFakeServer(t)
	c, _, _ := start(t, srv, component.Config{}, nil)
	srv.next()
	waitConnected(t, c)
	if got := connections(t, reader, srv.ln.Addr().String()); got != 1 {
		t.Fatalf("connections while connected = %d, want 1", got)
	}
}
