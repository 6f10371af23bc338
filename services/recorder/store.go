package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	schema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
	"github.com/wakepush/wakepush/services/internal/redact"
)

// store writes row batches into ClickHouse over the native protocol.
type store struct {
	conn      driver.Conn
	database  string
	insertSQL map[string]string
}

// parseDSN returns the connection options of dsn without a database (the recorder names its
// database in every statement, so it can connect before the database exists) and the database.
func parseDSN(dsn string) (*clickhouse.Options, string, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		// url.Parse's errors quote the whole DSN, password included.
		return nil, "", fmt.Errorf("WAKEPUSH_CLICKHOUSE_DSN: %w", redact.Error(err))
	}
	db := opts.Auth.Database
	if db == "" {
		db = schema.DefaultDatabase
	}
	if err := schema.ValidDatabase(db); err != nil {
		return nil, "", fmt.Errorf("WAKEPUSH_CLICKHOUSE_DSN: %w", err)
	}
	opts.Auth.Database = ""
	if opts.DialTimeout == 0 || opts.DialTimeout > 10*time.Second {
		opts.DialTimeout = 10 * time.Second
	}
	return opts, db, nil
}

// connOptions is parseDSN with the TLS and credential settings of sec applied.
func connOptions(dsn string, sec clickhousex.Config) (*clickhouse.Options, string, error) {
	opts, db, err := parseDSN(dsn)
	if err != nil {
		return nil, "", err
	}
	if err := sec.Apply(opts); err != nil {
		return nil, "", err
	}
	return opts, db, nil
}

// openStore connects to ClickHouse (dsn, with sec's TLS and credentials) and, with migrate,
// applies the schema migrations, retrying while ClickHouse is not reachable until ctx ends. A
// changed applied migration or an error ClickHouse reports for a migration statement is
// returned at once: retrying would not fix it. Without migrate it runs no DDL and waits until
// another (wakepushctl migrate) has brought the schema to the latest version (waitSchema).
func openStore(ctx context.Context, dsn string, sec clickhousex.Config, migrate bool, log *slog.Logger) (*store, error) {
	opts, db, err := connOptions(dsn, sec)
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse: %w", err)
	}
	if !migrate {
		if err := waitSchema(ctx, conn, db, log); err != nil {
			conn.Close()
			return nil, err
		}
		log.Info("ClickHouse schema at the latest version", "database", db, "addr", opts.Addr)
		return newStore(conn, db), nil
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := schema.Migrate(ctx, conn, db)
		if err == nil {
			break
		}
		var ex *clickhouse.Exception
		if errors.Is(err, schema.ErrChecksum) || errors.Is(err, schema.ErrInvalid) || errors.As(err, &ex) {
			conn.Close()
			return nil, fmt.Errorf("migrate ClickHouse database %s: %w", db, err)
		}
		log.Warn("ClickHouse not reachable yet; retrying the migrations", "addr", opts.Addr, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("migrate ClickHouse database %s: %w (last error: %v)", db, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	log.Info("ClickHouse schema migrated", "database", db, "addr", opts.Addr)
	return newStore(conn, db), nil
}

func newStore(conn driver.Conn, db string) *store {
	s := &store{conn: conn, database: db, insertSQL: map[string]string{}}
	for _, t := range tables {
		s.insertSQL[t.name] = fmt.Sprintf("INSERT INTO `%s`.`%s` (%s)", db, t.name, strings.Join(t.columns, ", "))
	}
	return s
}

// schemaLogInterval is how often waitSchema logs what it is still waiting for.
const schemaLogInterval = 10 * time.Second

// waitSchema waits until database's schema_migrations lists every migration this recorder
// knows, reading only (SELECT on schema_migrations), logging what is missing every
// schemaLogInterval. A changed applied migration ends it at once; anything else — ClickHouse
// not reachable, the database or schema_migrations not there yet, migrations pending — is
// waited out until ctx ends, and the error then says what was missing.
func waitSchema(ctx context.Context, conn driver.Conn, db string, log *slog.Logger) error {
	var lastLog time.Time
	var missing string
	backoff := 200 * time.Millisecond
	for {
		pending, err := schema.Status(ctx, conn, db)
		if errors.Is(err, schema.ErrChecksum) || errors.Is(err, schema.ErrInvalid) {
			return fmt.Errorf("ClickHouse database %s: %w", db, err)
		}
		switch {
		case err != nil && ctx.Err() != nil && missing != "":
			// The read was cut short by the deadline: what the last one found is still the
			// best answer to what is missing.
		case err != nil:
			missing = err.Error()
		case len(pending) > 0:
			names := make([]string, len(pending))
			for i, m := range pending {
				names[i] = m.String()
			}
			missing = "migrations not applied: " + strings.Join(names, ", ")
		default:
			return nil
		}
		if lastLog.IsZero() || time.Since(lastLog) >= schemaLogInterval {
			log.Info("waiting for the ClickHouse schema (WAKEPUSH_CLICKHOUSE_MIGRATE=false: wakepushctl migrate applies it)", "database", db, "missing", missing)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ClickHouse schema of database %s not at the latest version (WAKEPUSH_CLICKHOUSE_MIGRATE=false: run wakepushctl migrate, the Helm chart's pre-install hook): %s: %w", db, missing, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

// Database is the database the store writes.
func (s *store) Database() string { return s.database }

// Insert writes rows into t as one block. token is the block's insert_deduplication_token: an
// insert that is retried with the same token after it actually succeeded is dropped by
// ClickHouse (the tables set non_replicated_deduplication_window), also for the materialized
// views fed by t.
func (s *store) Insert(ctx context.Context, t table, token string, rows [][]any) error {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"insert_deduplicate":                                 1,
		"insert_deduplication_token":                         token,
		"deduplicate_blocks_in_dependent_materialized_views": 1,
		// A batch of old records (a replay of the compacted registrations topic) may span more
		// partitions than the default limit of 100 per block; refusing it would stall the
		// recorder forever. Rows past the TTL are dropped by ClickHouse anyway.
		"throw_on_max_partitions_per_insert_block": 0,
	}))
	b, err := s.conn.PrepareBatch(ctx, s.insertSQL[t.name])
	if err != nil {
		return fmt.Errorf("prepare insert into %s: %w", t.name, err)
	}
	for _, row := range rows {
		if err := b.Append(row...); err != nil {
			_ = b.Abort()
			return fmt.Errorf("append row to %s: %w", t.name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", len(rows), t.name, err)
	}
	return nil
}

// Close closes the connections.
func (s *store) Close() error { return s.conn.Close() }
