package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/telemetry"
)

// metrics are the sender's OpenTelemetry instruments (on /metrics with dots as underscores,
// e.g. wakepush_sender_deliveries_total).
type metrics struct {
	// deliveries and inflight change for every wake: atomic cells read at collection
	// (telemetry.Counts) rather than synchronous instruments.
	deliveries   *telemetry.Counts[deliveryLabels]
	latency      metric.Float64Histogram
	inflight     *telemetry.Counts[struct{}]
	retries      metric.Int64Counter
	deadLetters  metric.Int64Counter
	configErrors metric.Int64Counter
	unregistered metric.Int64Counter
	recordErrors metric.Int64Counter
	commitErrors metric.Int64Counter
	wakeAge      metric.Float64Histogram

	latencyOpts *telemetry.OptionCache[latencyLabels]

	// lag is, per push.wakes partition, how many records were behind the high watermark at the
	// last fetch (wakepush.sender.consumer.lag).
	lagMu sync.Mutex
	lag   map[int]int64
}

func newMetrics(e *Engine) (*metrics, error) {
	meter := otel.Meter("github.com/wakepush/wakepush/services/sender")
	m := metrics{lag: map[int]int64{},
		latencyOpts: telemetry.NewOptionCache(func(l latencyLabels) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("app", l.app), attribute.String("platform", l.platform), attribute.String("action", l.action)}
		}),
	}
	errs := make([]error, 14)
	m.deliveries, errs[0] = telemetry.NewCounts(meter, "wakepush.sender.deliveries",
		"Delivery records written, by app, platform, outcome and reason", false,
		func(l deliveryLabels) []attribute.KeyValue {
			return []attribute.KeyValue{attribute.String("app", l.app), attribute.String("platform", l.platform),
				attribute.String("outcome", l.outcome), attribute.String("reason", l.reason)}
		})
	m.latency, errs[1] = meter.Float64Histogram("wakepush.sender.provider.duration", metric.WithUnit("s"),
		metric.WithDescription("time from sending a push to the provider's answer, by app, platform and action"),
		metric.WithExplicitBucketBoundaries(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
	m.inflight, errs[2] = telemetry.NewCounts(meter, "wakepush.sender.inflight",
		"wakes being handled (pushing, backing off, or waiting for a paused app)", true,
		func(struct{}) []attribute.KeyValue { return nil })
	m.retries, errs[3] = meter.Int64Counter("wakepush.sender.retries",
		metric.WithDescription("provider attempts that will be retried, by app and reason"))
	m.deadLetters, errs[4] = meter.Int64Counter("wakepush.sender.dead_letters",
		metric.WithDescription("records sent to push.wakes.dlq, by app and reason"))
	m.configErrors, errs[5] = meter.Int64Counter("wakepush.sender.configuration_errors",
		metric.WithDescription("provider answers that mean our configuration is wrong (alert on any), by app, environment and reason"))
	m.unregistered, errs[6] = meter.Int64Counter("wakepush.sender.unregistrations",
		metric.WithDescription("devices unregistered because the provider declared the token dead, by app and reason"))
	m.recordErrors, errs[7] = meter.Int64Counter("wakepush.sender.record_errors",
		metric.WithDescription("failed writes of outcome records to Kafka (retried)"))
	m.commitErrors, errs[8] = meter.Int64Counter("wakepush.sender.commit_errors",
		metric.WithDescription("failed offset commits on push.wakes (retried)"))
	_, errs[9] = meter.Int64ObservableGauge("wakepush.sender.paused",
		metric.WithDescription("1 for each app/environment paused after a configuration error"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for key, reason := range e.breaker.paused() {
				app, env, _ := strings.Cut(key, "/")
				o.Observe(1, metric.WithAttributes(attribute.String("app", app), attribute.String("environment", env), attribute.String("reason", reason)))
			}
			return nil
		}))
	_, errs[10] = meter.Int64ObservableGauge("wakepush.sender.registrations",
		metric.WithDescription("devices in the registration table"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(e.reg.Len()))
			return nil
		}))
	_, errs[11] = meter.Int64ObservableGauge("wakepush.sender.dedup.size",
		metric.WithDescription("delivered wake ids remembered for deduplication"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(e.dedup.Len()))
			return nil
		}))
	m.wakeAge, errs[12] = meter.Float64Histogram("wakepush.sender.wake.age", metric.WithUnit("s"),
		metric.WithDescription("age of a wake (now - its created_at) when the sender starts handling it: the sender's backlog in time"),
		metric.WithExplicitBucketBoundaries(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
	// The callback is registered on its own (not WithInt64Callback, which only the first
	// creation of an instrument in a provider keeps), so every engine's partitions are reported.
	lag, err := meter.Int64ObservableGauge("wakepush.sender.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("records behind the push.wakes partition's high watermark at the last fetch, by topic and partition"))
	if errs[13] = err; err == nil {
		_, errs[13] = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			m.lagMu.Lock()
			defer m.lagMu.Unlock()
			for p, v := range m.lag {
				o.ObserveInt64(lag, v, metric.WithAttributes(attribute.String("messaging.destination.name", topics.Wakes),
					attribute.String("messaging.destination.partition.id", strconv.Itoa(p))))
			}
			return nil
		}, lag)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("sender metrics: %w", err)
	}
	return &m, nil
}

// fetched remembers how far behind its partition msg was when fetched.
func (m *metrics) fetched(msg *kafka.Message) {
	if msg.HighWaterMark <= 0 {
		return
	}
	m.lagMu.Lock()
	m.lag[msg.Partition] = max(msg.HighWaterMark-msg.Offset-1, 0)
	m.lagMu.Unlock()
}

// deliveryLabels are the labels of wakepush.sender.deliveries.
type deliveryLabels struct{ app, platform, outcome, reason string }

// latencyLabels are the labels of wakepush.sender.provider.duration.
type latencyLabels struct{ app, platform, action string }
