// Command kafka-broker runs the local dev stack's Kafka broker: a
// single-node kfake cluster that persists to a data directory.
//
//	kafka-broker [-addr 127.0.0.1:19092] [-data-dir ./.data/kafka] [-sync-writes]
//
// Topics are not created here; each service creates its own. SIGINT/SIGTERM
// closes the broker, which writes its state to the data directory first.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := realMain(os.Args[1:], logger); err != nil {
		logger.Error("kafka-broker failed", "err", err)
		os.Exit(1)
	}
}

func realMain(args []string, logger *slog.Logger) error {
	defAddr := kafkabroker.DefaultAddr
	if v := os.Getenv("WAKEPUSH_DEV_KAFKA_ADDR"); v != "" {
		defAddr = v
	}
	fs := flag.NewFlagSet("kafka-broker", flag.ContinueOnError)
	addr := fs.String("addr", defAddr, "listen address host:port (env WAKEPUSH_DEV_KAFKA_ADDR)")
	dataDir := fs.String("data-dir", "./.data/kafka", "directory persisting topics, records and offsets; empty keeps them in memory")
	syncWrites := fs.Bool("sync-writes", false, "fsync every produced batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := kafkabroker.Start(kafkabroker.Options{
		Addr:       *addr,
		DataDir:    *dataDir,
		SyncWrites: *syncWrites,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	logger.Info("kafka broker listening", "addr", b.Addr(), "data_dir", *dataDir, "sync_writes", *syncWrites)
	<-ctx.Done()
	stop()
	logger.Info("shutting down kafka broker")
	b.Close()
	logger.Info("kafka broker stopped")
	return nil
}
