// Command coalescer turns push events into wakes (DESIGN §5): it consumes push.events as the
// consumer group wakepush-coalescer, owns the devices of each assigned partition outright, and
// writes one wake per device and interval to push.wakes (leading edge, trailing edge, urgent
// bypass, dedup of repeated event ids). Its state is rebuilt from push.wakes whenever it is
// assigned a partition, so any instance may die at any moment.
//
// Layout:
//
//	main.go       this table of contents
//	settings.go   configuration (flags and WAKEPUSH_* variables) and its validation
//	group.go      the consumer group: generations, one partition runner per assigned partition
//	partition.go  a partition runner: fetch, decide, produce, commit only what is safe
//	restore.go    rebuilding a partition's state from push.wakes before consuming
//	records.go    record conversion: events in, wakes and dead letters out, trace links
//	metrics.go    OpenTelemetry instruments
//	coalesce/     the pure, clock-driven state machine and timer heap
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/admin"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
)

func main() { service.Main("coalescer", run) }

// run is the whole service; it returns when ctx ends (SIGTERM) and the partitions are released.
func run(ctx context.Context, args []string) error {
	// 1. Settings, validated before anything starts.
	cfg, err := loadSettings(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // usage was printed
	}
	if err != nil {
		return err
	}

	// 2. Logger, telemetry, /livez /readyz /metrics (not ready yet).
	base, err := service.Start(ctx, "coalescer", cfg.Service)
	if err != nil {
		return err
	}
	defer base.Close()

	// 3. The topics this service reads and writes: applied idempotently, or only waited for
	// (WAKEPUSH_KAFKA_CREATE_TOPICS=false: wakepushctl migrate creates them).
	if err := cfg.Kafka.EnsureTopics(ctx, topics.Events, topics.Wakes, topics.EventsDLQ); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}

	// 4. The producer of wakes and dead letters (acks=all, Murmur2 by device_id).
	producer, err := kafkax.NewProducer(&cfg.Kafka)
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	defer producer.Close()

	// 5. The coalescer: ready once the group is joined; not ready as soon as draining starts.
	c, err := newCoalescer(cfg, base.Log, producer)
	if err != nil {
		return err
	}
	base.Admin.AddCheck(admin.Check{Name: "kafka", Fn: cfg.Kafka.Ping})
	c.onJoined = func() { base.Admin.SetReady(true, "") }
	stop := context.AfterFunc(ctx, func() { base.Admin.SetReady(false, "draining") })
	defer stop()

	// 6. Consume until SIGTERM: stop fetching, commit what is safe (pending trailing wakes are
	// not sent early: their events stay uncommitted for the next owner), leave the group.
	return c.consume(ctx)
}
