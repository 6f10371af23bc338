package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/redact"
)

// migrateOptions are the flags of `wakepushctl migrate` and `wakepushctl check`.
type migrateOptions struct {
	KafkaOnly, ClickHouseOnly bool
	AddPartitions             bool
	Timeout                   time.Duration
}

// infraSettings are how migrate and check reach Kafka and ClickHouse: the services' own
// settings (WAKEPUSH_KAFKA_*, WAKEPUSH_CLICKHOUSE_*), secrets from the environment or files only.
type infraSettings struct {
	kafka kafkax.Config
	ch    chSettings
	o     migrateOptions
}

func parseInfra(name string, args []string, migrate bool) (*infraSettings, error) {
	var c infraSettings
	s := config.New("wakepushctl " + name)
	c.kafka.Register(s)
	c.ch.register(s)
	s.Bool(&c.o.KafkaOnly, "kafka-only", "WAKEPUSH_"+strings.ToUpper(name)+"_KAFKA_ONLY", false, "only Kafka, not ClickHouse")
	s.Bool(&c.o.ClickHouseOnly, "clickhouse-only", "WAKEPUSH_"+strings.ToUpper(name)+"_CLICKHOUSE_ONLY", false, "only ClickHouse, not Kafka")
	def := 30 * time.Second
	if migrate {
		def = 5 * time.Minute
		s.Bool(&c.o.AddPartitions, "add-partitions", "WAKEPUSH_MIGRATE_ADD_PARTITIONS", false,
			"raise the partition count of existing topics to WAKEPUSH_KAFKA_PARTITIONS (moves devices to other partitions: their earlier records stay where they were)")
	}
	s.Duration(&c.o.Timeout, "timeout", "WAKEPUSH_"+strings.ToUpper(name)+"_TIMEOUT", def,
		"give up after this long (waiting while Kafka and ClickHouse come up counts)")
	if err := s.Parse(args); err != nil {
		return nil, err
	}
	var chk config.Check
	if !c.o.ClickHouseOnly {
		c.kafka.Validate(&chk)
	}
	chk.Require(!(c.o.KafkaOnly && c.o.ClickHouseOnly), "-kafka-only and -clickhouse-only exclude each other")
	chk.Require(c.o.Timeout > 0, "-timeout must be > 0")
	if err := chk.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// migrate is `wakepushctl migrate`: what the services otherwise do at start with DDL rights, once,
// for a deployment whose services have none (the Helm chart's pre-install/pre-upgrade hook Job).
// It creates every wakepush topic and sets its configuration (topics.Migrate), then creates the
// ClickHouse database and applies the migrations (schemas/clickhouse), retrying while either is
// not reachable yet, and prints each change. A second run changes nothing.
func migrate(ctx context.Context, args []string) error { return migrateTo(ctx, os.Stdout, args) }

func migrateTo(ctx context.Context, w io.Writer, args []string) error {
	c, err := parseInfra("migrate", args, true)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	changes := 0
	if !c.o.ClickHouseOnly {
		res, err := c.kafka.MigrateTopics(ctx, topics.MigrateOptions{AddPartitions: c.o.AddPartitions})
		for _, ch := range res.Changes {
			fmt.Fprintln(w, "kafka:", ch)
		}
		for _, n := range res.Notes {
			fmt.Fprintln(w, "kafka: note:", n)
		}
		changes += len(res.Changes)
		if err != nil {
			return fmt.Errorf("migrate: Kafka %s: %w", strings.Join(c.kafka.Brokers, ","), err)
		}
		fmt.Fprintf(w, "kafka: %d topics as specified (%d partitions each), %d changed\n", len(topics.All), c.kafka.Partitions, len(res.Changes))
	}
	if !c.o.KafkaOnly {
		applied, db, err := c.ch.migrate(ctx)
		for _, m := range applied {
			fmt.Fprintf(w, "clickhouse: %s: applied %s\n", db, m)
		}
		changes += len(applied)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		latest, err := chschema.Latest()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "clickhouse: %s at %s, %d migrations applied now\n", db, latest, len(applied))
	}
	if changes == 0 {
		fmt.Fprintln(w, "nothing to change")
	}
	return nil
}

// adminConn connects without a database (the database may not exist yet: every statement names
// it) and returns the DSN's database (default wakepush).
func (c *chSettings) adminConn() (driver.Conn, string, string, error) {
	opts, err := clickhouse.ParseDSN(c.dsn)
	if err != nil {
		return nil, "", "", fmt.Errorf("WAKEPUSH_CLICKHOUSE_DSN: %w", redact.Error(err)) // url.Parse quotes the DSN
	}
	db := opts.Auth.Database
	if db == "" {
		db = chschema.DefaultDatabase
	}
	if err := chschema.ValidDatabase(db); err != nil {
		return nil, "", "", fmt.Errorf("WAKEPUSH_CLICKHOUSE_DSN: %w", err)
	}
	opts.Auth.Database = ""
	if opts.DialTimeout == 0 || opts.DialTimeout > 10*time.Second {
		opts.DialTimeout = 10 * time.Second
	}
	if err := c.sec.Apply(opts); err != nil {
		return nil, "", "", err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, "", "", fmt.Errorf("clickhouse: %w", redact.Error(err, opts.Auth.Password))
	}
	return conn, db, strings.Join(opts.Addr, ","), nil
}

// migrate applies the pending migrations, retrying while ClickHouse is not reachable until ctx
// ends. An error ClickHouse reports (a statement, missing rights) or a changed applied migration
// ends it at once.
func (c *chSettings) migrate(ctx context.Context) ([]chschema.Migration, string, error) {
	conn, db, addr, err := c.adminConn()
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	var all []chschema.Migration
	backoff := 200 * time.Millisecond
	for {
		applied, err := chschema.Apply(ctx, conn, db)
		all = append(all, applied...)
		if err == nil {
			return all, db, nil
		}
		var ex *clickhouse.Exception
		if errors.Is(err, chschema.ErrChecksum) || errors.Is(err, chschema.ErrInvalid) || errors.As(err, &ex) {
			return all, db, fmt.Errorf("ClickHouse %s database %s: %w", addr, db, err)
		}
		select {
		case <-ctx.Done():
			return all, db, fmt.Errorf("ClickHouse %s not reachable: %w (last error: %v)", addr, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
