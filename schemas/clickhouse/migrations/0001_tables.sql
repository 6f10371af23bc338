-- 0001: one table per record type. Written only by the recorder (services/recorder).
--
-- Conventions (all tables):
--   * one row per Kafka record, with the record's fields; enums as LowCardinality(String) names
--     without their prefix ('APNS', 'ACCEPTED'); times as DateTime64(3, 'UTC');
--     kafka_partition / kafka_offset say where the row was read.
--   * ReplacingMergeTree ORDER BY (..., id): a record read twice (replay, redelivery after a
--     rebalance, a producer retry that duplicated it) collapses into one row on merge; query with
--     FINAL (or argMax/any by id) for exact counts.
--   * insert_deduplication_token per recorder batch (needs non_replicated_deduplication_window on
--     non-replicated tables): a retried insert of the same batch is dropped outright.
--   * daily partitions; rows expire 90 days after their record time (TTL), enough for quarterly
--     comparisons while keeping the tables small. Change the TTL with a new migration.
--     Exception: registrations come from a compacted topic whose records live forever and tell
--     a device's state (a device may keep one registration for months), so that table keeps
--     rows 365 days in monthly partitions (a replay of the topic then spans few partitions).
-- Privacy (DESIGN §4): no provider token is stored anywhere (registrations keep only has_token);
-- no node (which can be a token in fpush-style registrations) is stored, only a hash of it;
-- dead letters keep the size of the original value, never the value.
-- ${database} is replaced with the configured database name.

CREATE TABLE IF NOT EXISTS ${database}.events
(
    id                         String COMMENT 'record id (UUIDv7)',
    accepted_at                DateTime64(3, 'UTC') COMMENT 'when ingest accepted the event',
    device_id                  String,
    app                        LowCardinality(String),
    platform                   LowCardinality(String) COMMENT 'APNS, FCM',
    source                     LowCardinality(String) COMMENT 'XMPP_COMPONENT, HTTP',
    sender                     LowCardinality(String) COMMENT 'XMPP server domain or HTTP tenant',
    node_hash                  UInt64 COMMENT 'first 8 bytes of SHA-256(node); the node itself is not stored',
    urgent                     Bool,
    important                  Bool,
    message_count              UInt32,
    pending_subscription_count UInt32,
    kafka_partition            Int32,
    kafka_offset               Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(accepted_at)
ORDER BY (app, device_id, id)
TTL toDateTime(accepted_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ${database}.registrations
(
    id                  String,
    created_at          DateTime64(3, 'UTC'),
    device_id           String,
    app                 LowCardinality(String),
    platform            LowCardinality(String) COMMENT 'APNS, FCM',
    environment         LowCardinality(String) COMMENT 'PRODUCTION, SANDBOX, UNSPECIFIED (= production)',
    has_token           Bool COMMENT 'whether the record carried a provider token; the token is never stored',
    state               LowCardinality(String) COMMENT 'ACTIVE, UNREGISTERED',
    source              LowCardinality(String) COMMENT 'HTTP_API, ADHOC, TOKEN_NODE, SENDER',
    reason              String COMMENT 'why it was unregistered',
    provider_invalid_at Nullable(DateTime64(3, 'UTC')),
    registered_at       Nullable(DateTime64(3, 'UTC')),
    kafka_partition     Int32,
    kafka_offset        Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (app, device_id, id)
TTL toDateTime(created_at) + INTERVAL 365 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ${database}.wakes
(
    id              String COMMENT 'deterministic per device and interval: a re-emitted wake keeps its id',
    created_at      DateTime64(3, 'UTC'),
    device_id       String,
    app             LowCardinality(String),
    platform        LowCardinality(String),
    reason          LowCardinality(String) COMMENT 'LEADING, TRAILING, URGENT',
    event_count     UInt32 COMMENT 'events covered (event_ids holds at most the first 64)',
    event_ids       Array(String),
    first_event_at  DateTime64(3, 'UTC'),
    last_event_at   DateTime64(3, 'UTC'),
    urgent          Bool,
    kafka_partition Int32,
    kafka_offset    Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(created_at)
ORDER BY (app, device_id, id)
TTL toDateTime(created_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ${database}.deliveries
(
    id                  String,
    created_at          DateTime64(3, 'UTC'),
    wake_id             String,
    device_id           String,
    app                 LowCardinality(String),
    platform            LowCardinality(String),
    environment         LowCardinality(String),
    outcome             LowCardinality(String) COMMENT 'ACCEPTED, RETRY, PERMANENT, CONFIGURATION, DEAD_LETTERED, DROPPED',
    attempt             UInt32,
    status_code         UInt16,
    reason              LowCardinality(String),
    provider_message_id String,
    provider_latency_ms Float64 COMMENT 'request to provider answer',
    wake_created_at     DateTime64(3, 'UTC'),
    kafka_partition     Int32,
    kafka_offset        Int64,
    INDEX wake_id_idx wake_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(created_at)
ORDER BY (app, device_id, id)
TTL toDateTime(created_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS ${database}.receipts
(
    id              String,
    created_at      DateTime64(3, 'UTC') COMMENT 'when ingest received the receipt',
    wake_id         String,
    device_id       String,
    app             LowCardinality(String),
    received_at     Nullable(DateTime64(3, 'UTC')) COMMENT 'when the device says the wake arrived',
    kafka_partition Int32,
    kafka_offset    Int64,
    INDEX wake_id_idx wake_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(created_at)
ORDER BY (app, device_id, id)
TTL toDateTime(created_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- Records of push.wakes.dlq and push.events.dlq, plus records the recorder itself could not
-- decode (stage 'recorder'; id 'recorder:<topic>:<partition>:<offset>').
CREATE TABLE IF NOT EXISTS ${database}.dead_letters
(
    id               String,
    created_at       DateTime64(3, 'UTC'),
    source_topic     LowCardinality(String) COMMENT 'where the original record was read',
    source_partition Int32,
    source_offset    Int64,
    stage            LowCardinality(String) COMMENT 'coalescer, sender, recorder',
    reason           String,
    value_bytes      UInt32 COMMENT 'size of the original value; the value is not stored',
    kafka_topic      LowCardinality(String) COMMENT 'topic the dead letter itself was read from',
    kafka_partition  Int32,
    kafka_offset     Int64
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(created_at)
ORDER BY (stage, source_topic, id)
TTL toDateTime(created_at) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;
