package core

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wakepush/wakepush/services/internal/telemetry"
)

// MeterName is the instrumentation scope of ingest's metrics.
const MeterName = "github.com/wakepush/wakepush/services/ingest"

// Metrics are ingest's request metrics (OpenTelemetry, exported on /metrics).
type Metrics struct {
	// Counted on every publish: atomic cells read at collection (telemetry.Counts).
	publishes      *telemetry.Counts[publishKey]
	inflightCounts *telemetry.Counts[string] // by source
	registrations  metric.Int64Counter
	receipts       metric.Int64Counter
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
	if m.publishes, err = telemetry.NewCounts(meter, "wakepush.ingest.publishes",
		"publishes (XEP-0357 publish IQs, HTTP events) by source, outcome and condition", false,
		func(k publishKey) []attribute.KeyValue {
			return append(outcomeAttrs(k.code), attribute.String("source", k.source))
		}); err != nil {
		return nil, fmt.Errorf("metric: %w", err)
	}
	if m.inflightCounts, err = telemetry.NewCounts(meter, "wakepush.ingest.publishes.inflight",
		"publishes being verified or waiting for Kafka's acknowledgement", true,
		func(source string) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("source", source)}
		}); err != nil {
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
func (m *Metrics) Publish(_ context.Context, source string, c Code) {
	m.publishes.Add(publishKey{source, c}, 1)
}

func (m *Metrics) inflight(_ context.Context, source string, d int64) {
	m.inflightCounts.Add(source, d)
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
