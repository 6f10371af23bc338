package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentation = "github.com/wakepush/wakepush/services/recorder"

// metrics are the recorder's OpenTelemetry instruments (served on /metrics).
type metrics struct {
	rows          metric.Int64Counter
	insertLatency metric.Float64Histogram
	batchRows     metric.Int64Histogram
	insertErrors  metric.Int64Counter
	poison        metric.Int64Counter
	commitErrors  metric.Int64Counter
	tracer        trace.Tracer

	mu  sync.Mutex
	lag map[topicPartition]int64
}

type topicPartition struct {
	topic     string
	partition int
}

func newMetrics() (*metrics, error) {
	meter := otel.Meter(instrumentation)
	m := &metrics{tracer: otel.Tracer(instrumentation), lag: map[topicPartition]int64{}}
	var err error
	if m.rows, err = meter.Int64Counter("wakepush.recorder.rows",
		metric.WithUnit("{row}"), metric.WithDescription("rows inserted into ClickHouse, by table")); err != nil {
		return nil, fmt.Errorf("rows counter: %w", err)
	}
	if m.insertLatency, err = meter.Float64Histogram("wakepush.recorder.insert.duration",
		metric.WithUnit("s"), metric.WithDescription("time of one ClickHouse batch insert attempt, by table and error"),
		metric.WithExplicitBucketBoundaries(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, fmt.Errorf("insert latency histogram: %w", err)
	}
	if m.batchRows, err = meter.Int64Histogram("wakepush.recorder.batch.size",
		metric.WithUnit("{row}"), metric.WithDescription("rows per ClickHouse insert, by table"),
		metric.WithExplicitBucketBoundaries(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)); err != nil {
		return nil, fmt.Errorf("batch size histogram: %w", err)
	}
	if m.insertErrors, err = meter.Int64Counter("wakepush.recorder.insert.errors",
		metric.WithDescription("failed ClickHouse insert attempts (retried), by table")); err != nil {
		return nil, fmt.Errorf("insert errors counter: %w", err)
	}
	if m.poison, err = meter.Int64Counter("wakepush.recorder.poison_records",
		metric.WithDescription("records that could not be decoded (skipped, written to dead_letters as stage recorder), by topic")); err != nil {
		return nil, fmt.Errorf("poison counter: %w", err)
	}
	if m.commitErrors, err = meter.Int64Counter("wakepush.recorder.commit.errors",
		metric.WithDescription("offset commits that failed after the rows were inserted (the records will be read again and deduplicated)")); err != nil {
		return nil, fmt.Errorf("commit errors counter: %w", err)
	}
	lag, err := meter.Int64ObservableGauge("wakepush.recorder.consumer.lag",
		metric.WithUnit("{record}"), metric.WithDescription("records behind the partition's high watermark at the last fetch, by topic and partition"))
	if err != nil {
		return nil, fmt.Errorf("lag gauge: %w", err)
	}
	if _, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for tp, v := range m.lag {
			o.ObserveInt64(lag, v, metric.WithAttributes(
				attribute.String("messaging.destination.name", tp.topic),
				attribute.String("messaging.destination.partition.id", strconv.Itoa(tp.partition))))
		}
		return nil
	}, lag); err != nil {
		return nil, fmt.Errorf("lag callback: %w", err)
	}
	return m, nil
}

// observeLag remembers how far behind its partition msg was when fetched.
func (m *metrics) observeLag(msg *kafka.Message) {
	if msg.HighWaterMark <= 0 {
		return
	}
	m.mu.Lock()
	m.lag[topicPartition{msg.Topic, msg.Partition}] = max(msg.HighWaterMark-msg.Offset-1, 0)
	m.mu.Unlock()
}
