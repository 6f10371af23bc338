package core

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of ingest's metrics.
const MeterName = "github.com/wakepush/wakepush/services/ingest"

// Metrics are ingest's request metrics (OpenTelemetry, exported on /metrics).
type Metrics struct {
	publishes     metric.Int64Counter
	inflightCount metric.Int64UpDownCounter
	registrations metric.Int64Counter
	receipts      metric.Int64Counter

	// Attribute sets are built once per label combination: building one per call (sorting,
	// hashing, allocating) cost ~8 µs of a publish's CPU.
	publishAttrs  sync.Map // publishKey → metric.MeasurementOption
	inflightAttrs sync.Map // source → metric.MeasurementOption
}

type publishKey struct {
	source string
	code   Code
}

// NewMetrics creates the instruments on the global meter provider.
func NewMetrics() (*Metrics, error) {
	meter := otel.Meter(MeterName)
	var m Metrics
	var err error
	if m.publishes, err = meter.Int64Counter("wakepush.ingest.publishes",
		metric.WithDescription("publishes (XEP-0357 publish IQs, HTTP events) by source, outcome and condition")); err != nil {
		return nil, fmt.Errorf("metric: %w", err)
	}
	if m.inflightCount, err = meter.Int64UpDownCounter("wakepush.ingest.publishes.inflight",
		metric.WithDescription("publishes being verified or waiting for Kafka's acknowledgement")); err != nil {
		return nil, fmt.Errorf("metric: %w", err)
	}
	if m.registrations, err = meter.Int64Counter("wakepush.ingest.registrations",
		metric.WithDescription("registration requests by source, requested state, outcome and condition")); err != nil {
		return nil, fmt.Errorf("metric: %w", err)
	}
	if m.receipts, err = meter.Int64Counter("wakepush.ingest.receipts",
		metric.WithDescription("device receipts by outcome and condition")); err != nil {
		return nil, fmt.Errorf("metric: %w", err)
	}
	return &m, nil
}

// Outcome groups codes: accepted, rejected (the caller's fault or a dead device) or failed
// (ours: retry later).
func Outcome(c Code) string {
	switch c {
	case CodeOK:
		return "accepted"
	case CodeUnavailable, CodeOverloaded, CodeShuttingDown:
		return "failed"
	}
	return "rejected"
}

func outcomeAttrs(c Code) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("outcome", Outcome(c)), attribute.String("condition", string(c))}
}

// Publish counts one publish with its source and result. Front ends call it for publishes they
// refuse before the core sees them (malformed, over the in-flight limit).
func (m *Metrics) Publish(ctx context.Context, source string, c Code) {
	k := publishKey{source, c}
	opt, ok := m.publishAttrs.Load(k)
	if !ok {
		opt, _ = m.publishAttrs.LoadOrStore(k, metric.WithAttributeSet(attribute.NewSet(append(outcomeAttrs(c), attribute.String("source", source))...)))
	}
	m.publishes.Add(ctx, 1, opt.(metric.MeasurementOption))
}

func (m *Metrics) inflight(ctx context.Context, source string, d int64) {
	opt, ok := m.inflightAttrs.Load(source)
	if !ok {
		opt, _ = m.inflightAttrs.LoadOrStore(source, metric.WithAttributeSet(attribute.NewSet(attribute.String("source", source))))
	}
	m.inflightCount.Add(ctx, d, opt.(metric.MeasurementOption))
}

// Registration counts one registration request.
func (m *Metrics) Registration(ctx context.Context, source, state string, c Code) {
	m.registrations.Add(ctx, 1, metric.WithAttributes(append(outcomeAttrs(c),
		attribute.String("source", source), attribute.String("state", state))...))
}

// Receipt counts one receipt.
func (m *Metrics) Receipt(ctx context.Context, c Code) {
	m.receipts.Add(ctx, 1, metric.WithAttributes(outcomeAttrs(c)...))
}
