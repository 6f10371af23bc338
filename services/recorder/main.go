// Command recorder projects every wakepush Kafka record into ClickHouse, one row per record, for
// the loss and latency queries in schemas/clickhouse/queries (DESIGN §7). It is the only writer
// to ClickHouse and it is idempotent: replaying the topics yields the same tables. Its lag never
// slows pushes: ClickHouse being down delays telemetry, never delivery.
//
// Layout:
//
//	main.go      this table of contents
//	config.go    configuration (flags and WAKEPUSH_* variables) and its validation
//	store.go     ClickHouse: connect, migrate (schemas/clickhouse) or wait for the schema, batch insert
//	             with a dedup token
//	recorder.go  the loop: fetch, batch per table, flush, commit only what is inserted, drain
//	rows.go      record → row mapping, one table per record type; poison records
//	metrics.go   OpenTelemetry instruments
//
// README.md has the configuration table, the tables and how to run the analyst queries.
package main

import (
	"context"
	"errors"
	"flag"

	"github.com/wakepush/wakepush/services/internal/admin"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
)

func main() { service.Main("recorder", run) }

// run is the whole service; it returns when ctx ends (SIGTERM) and the pending rows are flushed.
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
	base, err := service.Start(ctx, "recorder", cfg.Service)
	if err != nil {
		return err
	}
	defer base.Close()

	// 3. Every wakepush topic exists (idempotent, the shared specs of schemas/topics; only waited
	// for with WAKEPUSH_KAFKA_CREATE_TOPICS=false).
	if err := cfg.Kafka.EnsureTopics(ctx, recordedTopics()...); err != nil {
		return base.StartErr(ctx, err)
	}

	// 4. The ClickHouse database and schema, migrated (retrying while ClickHouse is not reachable),
	// or only waited for with WAKEPUSH_CLICKHOUSE_MIGRATE=false.
	store, err := openStore(ctx, cfg.ClickHouseDSN, cfg.ClickHouse, cfg.Migrate, base.Log)
	if err != nil {
		return base.StartErr(ctx, err)
	}
	defer store.Close()

	// 5. One consumer group over every topic; always closed, so the group rebalances at once.
	// Fetches wait for WAKEPUSH_RECORDER_FETCH_MIN_BYTES (or 250 ms): rows wait for the flush anyway.
	reader, err := kafkax.NewBulkReader(&cfg.Kafka, cfg.Group, cfg.FetchMinBytes, recordedTopics()...)
	if err != nil {
		return err
	}
	defer base.CloseReader(reader)

	// 6. The recorder: ready once migrated; not ready as soon as draining starts.
	rec, err := newRecorder(cfg.recorderOptions(), reader, store, base.Log)
	if err != nil {
		return err
	}
	base.Admin.AddCheck(admin.Check{Name: "kafka", Fn: cfg.Kafka.Ping})
	base.Admin.SetReady(true, "")
	stop := context.AfterFunc(ctx, func() { base.Admin.SetReady(false, "draining") })
	defer stop()
	base.Log.Info("recording", "database", store.Database(), "group", cfg.Group, "topics", recordedTopics(),
		"batch_rows", cfg.BatchRows, "flush_interval", cfg.FlushInterval, "fetch_min_bytes", cfg.FetchMinBytes)

	// 7. Batch rows per table until SIGTERM; commit offsets only after their rows are inserted;
	// then stop fetching, flush what is pending, commit.
	return rec.Run(ctx, base.DrainContext)
}
