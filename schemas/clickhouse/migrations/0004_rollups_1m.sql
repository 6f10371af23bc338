-- 0004: per-minute rollups for dashboards, beside wake_latency_1m (0002), each fed by a
-- materialized view on every insert into its raw table:
--   events_1m        events per app, platform, sender (XMPP server) and source; urgent ones
--   deliveries_1m    delivery records per app, platform, outcome and reason, with TDigest states
--                    of the provider latency and of wake -> provider answer
--                    (deliveries.created_at - wake_created_at)
--   dead_letters_1m  dead letters per stage and source topic
-- All are AggregatingMergeTree: read sums with sum() and quantile states with
-- quantilesTDigestMerge(0.5, 0.9, 0.99)(…), grouped by the keys you need (rows of one minute and
-- key are merged in the background, so never read them without GROUP BY).
-- 90 days TTL, like the raw tables.
-- The views see inserted blocks, not merged rows: a block the recorder re-inserts with the same
-- insert_deduplication_token is dropped before the view, but a replay of old offsets in
-- different batches is counted again here (the raw tables stay exact under FINAL).

CREATE TABLE IF NOT EXISTS ${database}.events_1m
(
    minute   DateTime('UTC') COMMENT 'minute of accepted_at',
    app      LowCardinality(String),
    platform LowCardinality(String),
    sender   LowCardinality(String) COMMENT 'XMPP server domain or HTTP tenant',
    source   LowCardinality(String) COMMENT 'XMPP_COMPONENT, HTTP',
    events   SimpleAggregateFunction(sum, UInt64),
    urgent   SimpleAggregateFunction(sum, UInt64) COMMENT 'events marked urgent'
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (app, platform, sender, source, minute)
TTL minute + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.events_1m_mv TO ${database}.events_1m AS
SELECT
    toStartOfMinute(accepted_at) AS minute,
    app,
    platform,
    sender,
    source,
    toUInt64(count()) AS events,
    toUInt64(countIf(urgent)) AS urgent
FROM ${database}.events
GROUP BY minute, app, platform, sender, source;

CREATE TABLE IF NOT EXISTS ${database}.deliveries_1m
(
    minute              DateTime('UTC') COMMENT 'minute of the delivery record''s created_at',
    app                 LowCardinality(String),
    platform            LowCardinality(String),
    outcome             LowCardinality(String) COMMENT 'ACCEPTED, RETRY, PERMANENT, CONFIGURATION, DEAD_LETTERED, DROPPED',
    reason              LowCardinality(String),
    deliveries          SimpleAggregateFunction(sum, UInt64) COMMENT 'delivery records (attempts)',
    provider_latency_ms AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64) COMMENT 'request to provider answer, over records that made a provider call (provider_latency_ms > 0)',
    wake_to_provider_ms AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64) COMMENT 'created_at - wake_created_at: wake to provider answer, over records with a wake time'
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (app, platform, outcome, reason, minute)
TTL minute + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.deliveries_1m_mv TO ${database}.deliveries_1m AS
SELECT
    toStartOfMinute(created_at) AS minute,
    app,
    platform,
    outcome,
    reason,
    toUInt64(count()) AS deliveries,
    quantilesTDigestStateIf(0.5, 0.9, 0.99)(provider_latency_ms, provider_latency_ms > 0) AS provider_latency_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.99)(toFloat64(dateDiff('millisecond', wake_created_at, created_at)),
        wake_created_at > toDateTime64(0, 3, 'UTC')) AS wake_to_provider_ms
FROM ${database}.deliveries
GROUP BY minute, app, platform, outcome, reason;

CREATE TABLE IF NOT EXISTS ${database}.dead_letters_1m
(
    minute       DateTime('UTC') COMMENT 'minute of the dead letter''s created_at',
    stage        LowCardinality(String) COMMENT 'coalescer, sender, recorder',
    source_topic LowCardinality(String),
    dead_letters SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (stage, source_topic, minute)
TTL minute + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.dead_letters_1m_mv TO ${database}.dead_letters_1m AS
SELECT
    toStartOfMinute(created_at) AS minute,
    stage,
    source_topic,
    toUInt64(count()) AS dead_letters
FROM ${database}.dead_letters
GROUP BY minute, stage, source_topic;
