package core_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
)

func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	// The series are cumulative, and cores made by earlier tests of this package (on the global
	// provider before this test set it) report into it too: compare what changed.
	collect := func() map[string]int64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				sum, ok := m.Data.(metricdata.Sum[int64])
				if !ok {
					continue
				}
				for _, dp := range sum.DataPoints {
					key := m.Name
					for _, k := range []attribute.Key{"source", "outcome", "condition", "state"} {
						if v, ok := dp.Attributes.Value(k); ok {
							key += " " + string(k) + "=" + v.AsString()
						}
					}
					got[key] = dp.Value
				}
			}
		}
		return got
	}

	p := &testenv.Producer{}
	in, _ := newCore(t, p, nil)
	ctx := context.Background()
	before := collect()
	reg, err := in.Register(ctx, core.RegisterRequest{App: testenv.IOSApp, Token: testenv.APNsToken, Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API})
	if err != nil {
		t.Fatal(err)
	}
	xmpp := wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT
	in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret, Source: xmpp})
	in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret, Source: xmpp})
	in.Publish(ctx, core.Event{Node: reg.Node, Secret: "nope", Source: xmpp})
	p.SetErr(testenv.ErrKafkaDown)
	in.Publish(ctx, core.Event{Node: reg.Node, Secret: reg.Secret, Source: wakepushv1.EventSource_EVENT_SOURCE_HTTP})

	got := collect()
	for k, v := range before {
		got[k] -= v
	}
	for key, want := range map[string]int64{
		"wakepush.ingest.publishes source=xmpp_component outcome=accepted condition=ok":             2,
		"wakepush.ingest.publishes source=xmpp_component outcome=rejected condition=not_authorized": 1,
		"wakepush.ingest.publishes source=http outcome=failed condition=unavailable":                1,
		"wakepush.ingest.publishes.inflight source=xmpp_component":                                  0,
		"wakepush.ingest.registrations source=http_api outcome=accepted condition=ok state=active":  1,
	} {
		if got[key] != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, got[key], want, got)
		}
	}
}
