package ratelimit

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the limiters' metrics.
const MeterName = "github.com/wakepush/wakepush/services/ingest/ratelimit"

// registerMetrics reports l's Stats as the metrics of the limiter called name, on the global
// meter provider. Limiters are meant to live as long as the process: the registration keeps l
// reachable. Errors go to the OpenTelemetry error handler (metrics never stop a limiter).
func registerMetrics(name string, l *Limiter) {
	meter := otel.Meter(MeterName)
	keys, err1 := meter.Int64ObservableGauge("wakepush.ingest.ratelimit.keys", metric.WithUnit("{key}"),
		metric.WithDescription("token buckets held by the limiter"))
	denied, err2 := meter.Int64ObservableCounter("wakepush.ingest.ratelimit.denied",
		metric.WithDescription("calls over the limit"))
	evictions, err3 := meter.Int64ObservableCounter("wakepush.ingest.ratelimit.evictions",
		metric.WithDescription("buckets dropped: reason idle (refilled, swept) or full (evicted for a new key) lose nothing; "+
			"active: the shard was full of buckets in use and its least recently used one was evicted"))
	if err := errors.Join(err1, err2, err3); err != nil {
		otel.Handle(fmt.Errorf("ratelimit metrics of %q: %w", name, err))
		return
	}
	base := attribute.String("limiter", name)
	reason := func(r string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(base, attribute.String("reason", r)))
	}
	only, idle, full, active := metric.WithAttributeSet(attribute.NewSet(base)), reason("idle"), reason("full"), reason("active")
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := l.Stats()
		o.ObserveInt64(keys, int64(st.Keys), only)
		o.ObserveInt64(denied, st.Denied, only)
		o.ObserveInt64(evictions, st.IdleEvicted, idle)
		o.ObserveInt64(evictions, st.FullEvicted, full)
		o.ObserveInt64(evictions, st.ActiveEvicted, active)
		return nil
	}, keys, denied, evictions)
	if err != nil {
		otel.Handle(fmt.Errorf("ratelimit metrics of %q: %w", name, err))
	}
}
