package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/telemetry"
)

// metrics are the coalescer's instruments (README.md, "Metrics").
type metrics struct {
	events      metric.Int64Counter
	wakes       metric.Int64Counter
	wakeEvents  metric.Int64Histogram
	duplicates  metric.Int64Counter
	deadLetters metric.Int64Counter
	restores    metric.Float64Histogram
	restoredN   metric.Int64Counter

	// Measurement options per label combination (built once, not per wake).
	eventOpts *telemetry.OptionCache[eventLabels]
	appOpts   *telemetry.OptionCache[string]
	wakeOpts  *telemetry.OptionCache[wakeLabels]

	mu    sync.Mutex
	parts map[int]*partitionStats
}

// partitionStats are a partition's gauges, written by its runner and read by the callback.
type partitionStats struct {
	devices, pending, seen atomic.Int64
	// lag is how many push.events records were behind the partition's high watermark at the
	// last fetched batch; -1 until the first batch.
	lag atomic.Int64
}

// fetched remembers how far behind the partition the last record of a batch was.
func (s *partitionStats) fetched(last *kafka.Message) {
	if last.HighWaterMark > 0 {
		s.lag.Store(max(last.HighWaterMark-last.Offset-1, 0))
	}
}

func (s *partitionStats) set(e *coalesce.Engine) {
	s.devices.Store(int64(e.Devices()))
	s.pending.Store(int64(e.Pending()))
	s.seen.Store(int64(e.SeenIDs()))
}

func newMetrics() (*metrics, error) {
	meter := otel.Meter("github.com/wakepush/wakepush/services/coalescer")
	m := &metrics{parts: map[int]*partitionStats{},
		eventOpts: telemetry.NewOptionCache(func(l eventLabels) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("app", l.app), attribute.String("outcome", l.outcome.String())}
		}),
		appOpts: telemetry.NewOptionCache(func(app string) []attribute.KeyValue { return []attribute.KeyValue{attribute.String("app", app)} }),
		wakeOpts: telemetry.NewOptionCache(func(l wakeLabels) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("app", l.app), attribute.String("reason", l.reason.String())}
		}),
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	m.events, err = meter.Int64Counter("wakepush.coalescer.events", metric.WithUnit("{event}"),
		metric.WithDescription("push events consumed, by app and outcome (woke, absorbed, duplicate)"))
	add(err)
	m.wakes, err = meter.Int64Counter("wakepush.coalescer.wakes", metric.WithUnit("{wake}"),
		metric.WithDescription("wakes produced and acknowledged, by app and reason (leading, trailing, urgent)"))
	add(err)
	m.wakeEvents, err = meter.Int64Histogram("wakepush.coalescer.wake.events", metric.WithUnit("{event}"),
		metric.WithDescription("events covered by one wake"),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256))
	add(err)
	m.duplicates, err = meter.Int64Counter("wakepush.coalescer.duplicates", metric.WithUnit("{event}"),
		metric.WithDescription("events dropped because their id was seen in the dedup window"))
	add(err)
	m.deadLetters, err = meter.Int64Counter("wakepush.coalescer.dead_letters", metric.WithUnit("{record}"),
		metric.WithDescription("push.events records sent to push.events.dlq, by reason"))
	add(err)
	m.restores, err = meter.Float64Histogram("wakepush.coalescer.restore.duration", metric.WithUnit("s"),
		metric.WithDescription("time to rebuild a partition's state from push.wakes"),
		metric.WithExplicitBucketBoundaries(.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
	add(err)
	m.restoredN, err = meter.Int64Counter("wakepush.coalescer.restore.wakes", metric.WithUnit("{wake}"),
		metric.WithDescription("wakes read back from push.wakes to rebuild state"))
	add(err)
	devices, err := meter.Int64ObservableGauge("wakepush.coalescer.devices", metric.WithUnit("{device}"),
		metric.WithDescription("devices tracked (woken in the last min_interval), by partition"))
	add(err)
	pending, err := meter.Int64ObservableGauge("wakepush.coalescer.pending_devices", metric.WithUnit("{device}"),
		metric.WithDescription("devices with a trailing wake pending, by partition"))
	add(err)
	seen, err := meter.Int64ObservableGauge("wakepush.coalescer.dedup.ids", metric.WithUnit("{id}"),
		metric.WithDescription("event ids remembered for deduplication, by partition"))
	add(err)
	lag, err := meter.Int64ObservableGauge("wakepush.coalescer.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("records behind the push.events partition's high watermark at the last fetched batch, by topic and partition"))
	add(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("coalescer metrics: %v", errs)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		for p, s := range m.parts {
			attrs := metric.WithAttributes(attribute.Int("partition", p))
			o.ObserveInt64(devices, s.devices.Load(), attrs)
			o.ObserveInt64(pending, s.pending.Load(), attrs)
			o.ObserveInt64(seen, s.seen.Load(), attrs)
			if l := s.lag.Load(); l >= 0 {
				o.ObserveInt64(lag, l, metric.WithAttributes(attribute.String("messaging.destination.name", topics.Events),
					attribute.String("messaging.destination.partition.id", strconv.Itoa(p))))
			}
		}
		return nil
	}, devices, pending, seen, lag)
	if err != nil {
		return nil, fmt.Errorf("coalescer metrics callback: %w", err)
	}
	return m, nil
}

// partition registers the gauges of a newly owned partition.
func (m *metrics) partition(p int) *partitionStats {
	s := &partitionStats{}
	s.lag.Store(-1)
	m.mu.Lock()
	m.parts[p] = s
	m.mu.Unlock()
	return s
}

// release drops a partition's gauges unless a newer runner registered it again.
func (m *metrics) release(p int, s *partitionStats) {
	m.mu.Lock()
	if m.parts[p] == s {
		delete(m.parts, p)
	}
	m.mu.Unlock()
}

// outcomeCounts counts a batch's event outcomes per app, so that the counters are updated once
// per batch rather than once per event.
type outcomeCounts []outcomeCount

type outcomeCount struct {
	app     string
	outcome coalesce.Outcome
	n       int64
}

func (c *outcomeCounts) reset() { *c = (*c)[:0] }

func (c *outcomeCounts) add(app string, o coalesce.Outcome) {
	for i := range *c {
		if x := &(*c)[i]; x.app == app && x.outcome == o {
			x.n++
			return
		}
	}
	*c = append(*c, outcomeCount{app: app, outcome: o, n: 1})
}

func (c outcomeCounts) record(ctx context.Context, m *metrics) {
	for _, x := range c {
		m.events.Add(ctx, x.n, m.eventOpts.Get(eventLabels{x.app, x.outcome}))
		if x.outcome == coalesce.Duplicate {
			m.duplicates.Add(ctx, x.n, m.appOpts.Get(x.app))
		}
	}
}

func (m *metrics) wake(ctx context.Context, w *coalesce.WakeDecision) {
	attrs := m.wakeOpts.Get(wakeLabels{w.App, w.Reason})
	m.wakes.Add(ctx, 1, attrs)
	m.wakeEvents.Record(ctx, int64(w.EventCount), attrs)
}

func (m *metrics) deadLetter(ctx context.Context, kind string) {
	m.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", kind)))
}

func (m *metrics) restored(ctx context.Context, wakes int, took time.Duration) {
	m.restores.Record(ctx, took.Seconds())
	m.restoredN.Add(ctx, int64(wakes))
}

// eventLabels are the labels of wakepush.coalescer.events.
type eventLabels struct {
	app     string
	outcome coalesce.Outcome
}

// wakeLabels are the labels of wakepush.coalescer.wakes and the events-per-wake histogram.
type wakeLabels struct {
	app    string
	reason coalesce.Reason
}
