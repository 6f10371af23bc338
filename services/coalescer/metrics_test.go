package main

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wakepush/wakepush/schemas/topics"
)

// The consumer lag the alert rules read (deploy/monitoring/rules): reported per partition once
// a batch was fetched, not before (0 would claim a partition is caught up that was never read).
func TestConsumerLagMetric(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	t.Cleanup(func() { otel.SetMeterProvider(prev) })

	m, err := newMetrics()
	if err != nil {
		t.Fatal(err)
	}
	m.partition(2).fetched(&kafka.Message{Topic: topics.Events, Partition: 2, Offset: 10, HighWaterMark: 15})
	m.partition(5) // owned, nothing fetched yet
	m.partition(7).fetched(&kafka.Message{Topic: topics.Events, Partition: 7, Offset: 99, HighWaterMark: 100})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != "wakepush.coalescer.consumer.lag" {
				continue
			}
			for _, dp := range mt.Data.(metricdata.Gauge[int64]).DataPoints {
				topic, _ := dp.Attributes.Value("messaging.destination.name")
				part, _ := dp.Attributes.Value("messaging.destination.partition.id")
				got[topic.AsString()+"/"+part.AsString()] = dp.Value
			}
		}
	}
	want := map[string]int64{topics.Events + "/2": 4, topics.Events + "/7": 0}
	if len(got) != len(want) || got[topics.Events+"/2"] != 4 || got[topics.Events+"/7"] != 0 {
		t.Errorf("lag = %v, want %v", got, want)
	}
}
