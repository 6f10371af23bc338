package main

import (
	"time"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/service"
)

// settings is the recorder's configuration (README.md has the table).
type settings struct {
	Service       service.Flags
	Kafka         kafkax.Config
	ClickHouseDSN string
	ClickHouse    clickhousex.Config // TLS and credentials beside the DSN
	// Migrate applies the schema migrations at start; false only waits until the schema is at
	// the latest version (wakepushctl migrate applies it), for a user without DDL rights.
	Migrate       bool
	Group         string
	BatchRows     int
	FlushInterval time.Duration
	InsertTimeout time.Duration
	FetchMinBytes int
}

func loadSettings(args []string) (*settings, error) {
	var c settings
	s := config.New("recorder")
	c.Service.Register(s, "127.0.0.1:18094")
	c.Kafka.Register(s)
	s.Secret(&c.ClickHouseDSN, "WAKEPUSH_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:19000/wakepush",
		"ClickHouse native-protocol DSN; its database (default wakepush) is created and migrated at start (see -clickhouse-migrate); credentials and TLS go here too (clickhouse://user:pass@host:9440/wakepush?secure=true)")
	c.ClickHouse.Register(s)
	s.Bool(&c.Migrate, "clickhouse-migrate", "WAKEPUSH_CLICKHOUSE_MIGRATE", true,
		"create the database and apply the schema migrations at start; false: wait until the schema is at the latest version (applied by wakepushctl migrate), for a ClickHouse user without DDL rights")
	s.String(&c.Group, "recorder-group", "WAKEPUSH_RECORDER_GROUP", "wakepush-recorder", "Kafka consumer group id")
	s.Int(&c.BatchRows, "recorder-batch-rows", "WAKEPUSH_RECORDER_BATCH_ROWS", 10000,
		"pending records (all tables together) that trigger a flush; also bounds the memory held while ClickHouse is down")
	s.Duration(&c.FlushInterval, "recorder-flush-interval", "WAKEPUSH_RECORDER_FLUSH_INTERVAL", time.Second,
		"longest time a record waits before its batch is flushed")
	s.Int(&c.FetchMinBytes, "recorder-fetch-min-bytes", "WAKEPUSH_RECORDER_FETCH_MIN_BYTES", 64<<10,
		"bytes the broker gathers for a fetch before it answers (at most 250 ms later): fewer, fuller fetches for both; 1 answers at the first record")
	s.Duration(&c.InsertTimeout, "recorder-insert-timeout", "WAKEPUSH_RECORDER_INSERT_TIMEOUT", 30*time.Second,
		"bound of one insert attempt; a failed attempt is retried with backoff")
	if err := s.Parse(args); err != nil {
		return nil, err
	}
	var chk config.Check
	c.Service.Validate(&chk)
	c.Kafka.Validate(&chk)
	chk.Require(c.Group != "", "WAKEPUSH_RECORDER_GROUP is required")
	chk.Require(c.BatchRows >= 1 && c.BatchRows <= 1_000_000, "WAKEPUSH_RECORDER_BATCH_ROWS must be in [1, 1000000], got %d", c.BatchRows)
	chk.Require(c.FlushInterval > 0, "WAKEPUSH_RECORDER_FLUSH_INTERVAL must be > 0")
	chk.Require(c.InsertTimeout > 0, "WAKEPUSH_RECORDER_INSERT_TIMEOUT must be > 0")
	chk.Require(c.FetchMinBytes >= 1 && c.FetchMinBytes <= 16<<20, "WAKEPUSH_RECORDER_FETCH_MIN_BYTES must be in [1, 16777216], got %d", c.FetchMinBytes)
	if _, _, err := connOptions(c.ClickHouseDSN, c.ClickHouse); err != nil {
		chk.Add(err)
	}
	if err := chk.Err(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *settings) recorderOptions() options {
	return options{Group: c.Group, BatchRows: c.BatchRows, FlushInterval: c.FlushInterval, InsertTimeout: c.InsertTimeout}
}

// recordedTopics is every wakepush topic: the recorder projects all of them.
func recordedTopics() []string {
	names := make([]string, len(topics.All))
	for i, s := range topics.All {
		names[i] = s.Name
	}
	return names
}
