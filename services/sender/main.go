// Command sender delivers wakes: it consumes push.wakes, pushes each wake to its device through
// APNs (sideshow/apns2, token auth) or FCM (HTTP v1, service account), classifies every answer,
// retries transient failures with backoff, unregisters dead tokens, dead-letters wakes whose
// attempts are exhausted, records a Delivery per attempt, and commits offsets only after those
// records are acknowledged (DESIGN §6).
//
// See README.md for configuration, the classification table, payload and metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"sync"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
	"github.com/wakepush/wakepush/services/sender/internal/dedup"
	"github.com/wakepush/wakepush/services/sender/internal/registry"
)

func main() { service.Main("sender", run) }

func run(ctx context.Context, args []string) error {
	// 1. Settings from env and flags, validated (keys readable, apps file sane) before anything starts.
	cfg, err := loadSettings(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil // usage was printed
	}
	if err != nil {
		return err
	}
	base, err := service.Start(ctx, "sender", cfg.Service)
	if err != nil {
		return err
	}
	defer base.Close()
	return serve(ctx, cfg, base)
}

// serve is the sender between the start and the close of the shared service machinery.
func serve(ctx context.Context, cfg *settings, base *service.Base) error {
	// 2. Topics exist (idempotent, shared specs; waited for with WAKEPUSH_KAFKA_CREATE_TOPICS=false).
	if err := cfg.Kafka.EnsureTopics(ctx, topics.Wakes, topics.Registrations, topics.Deliveries, topics.WakesDLQ); err != nil {
		return base.StartErr(ctx, err)
	}

	// 3. Outputs: the producer and the provider clients (APNs per app and environment, FCM per app).
	producer, err := kafkax.NewProducer(&cfg.Kafka)
	if err != nil {
		return err
	}
	defer producer.Close()
	providers, closeProviders, err := cfg.providers()
	if err != nil {
		return err
	}
	defer closeProviders()

	// 4. State from Kafka: the wakes delivered recently (dedup, every partition) and, per owned
	// partition, its registrations (loaded when the group assigns the partition, step 5). Both
	// keep following their topics until the wakes are drained.
	table := registry.New(&cfg.Kafka, base.Log, registry.Options{Retain: cfg.RegistryRetain})
	delivered := dedup.New(cfg.DedupSize)
	recent, err := dedup.Follow(&cfg.Kafka, delivered, cfg.DedupWindow, base.Log)
	if err != nil {
		return err
	}
	followCtx, stopFollowing := context.WithCancel(context.WithoutCancel(ctx))
	var following sync.WaitGroup
	defer func() { stopFollowing(); following.Wait() }()
	for _, run := range []func(context.Context) error{table.Run, recent.Run} {
		following.Go(func() {
			if err := run(followCtx); err != nil && followCtx.Err() == nil {
				base.Log.Error("following a topic stopped", "err", err)
			}
		})
	}
	base.Admin.SetReady(false, "reading recent push.deliveries")
	if err := recent.WaitCaughtUp(ctx); err != nil {
		return base.StartErr(ctx, err)
	}
	base.Log.Info("recent deliveries loaded", "recently_delivered_wakes", delivered.Len(), "dedup_window", cfg.DedupWindow)

	// 5. The delivery engine on the wakes consumer group. Each generation's partitions are
	// loaded into the table as they are assigned (a wake of a partition still loading waits for
	// that partition alone); ready once the first assignment is loaded.
	eng, err := cfg.engine(base.Log, table, producer, delivered, providers)
	if err != nil {
		return err
	}
	base.Admin.SetReady(false, "joining the consumer group")
	var readyOnce sync.Once
	reader, err := kafkax.NewGroupReader(&cfg.Kafka, kafkax.GroupReaderOptions{
		Group: cfg.Group, Topic: topics.Wakes, SessionTimeout: cfg.SessionTimeout, Log: base.Log,
		OnAssign: func(_ int32, partitions []int) {
			table.Assign(partitions)
			readyOnce.Do(func() { go readyWhenLoaded(ctx, table, partitions, base) })
		},
		OnRevoke: func(_ int32, partitions []int) { table.Revoke(partitions) },
	})
	if err != nil {
		return err
	}
	defer base.CloseReader(reader)

	// 6. Until SIGTERM: then not ready, stop fetching, finish in-flight pushes within the drain
	// timeout, commit what is recorded; the deferred calls close the reader, followers and clients.
	go func() { <-ctx.Done(); base.Admin.SetReady(false, "draining") }()
	base.Log.Info("sending", "group", cfg.Group, "concurrency", cfg.Concurrency, "apps", len(cfg.Apps.All()))
	return eng.Run(ctx, reader)
}
