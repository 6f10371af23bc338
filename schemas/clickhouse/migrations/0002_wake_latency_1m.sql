-- 0002: per-minute rollup of wake latency (wake created_at - first_event_at: how long the
-- oldest covered event waited for its wake) per app and platform, fed by a materialized view on
-- every insert into wakes. Read it with quantilesTDigestMerge (queries/wake_latency_1m.sql).
-- The view sees inserted blocks, not merged rows: a block the recorder re-inserts with the same
-- insert_deduplication_token is dropped before the view, but a replay of old offsets in
-- different batches is counted again here (the wakes table itself stays exact under FINAL).

CREATE TABLE IF NOT EXISTS ${database}.wake_latency_1m
(
    minute         DateTime('UTC'),
    app            LowCardinality(String),
    platform       LowCardinality(String),
    wakes          SimpleAggregateFunction(sum, UInt64),
    events         SimpleAggregateFunction(sum, UInt64),
    latency_ms     AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64),
    max_latency_ms SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (app, platform, minute)
TTL minute + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.wake_latency_1m_mv TO ${database}.wake_latency_1m AS
SELECT
    toStartOfMinute(created_at) AS minute,
    app,
    platform,
    toUInt64(count()) AS wakes,
    toUInt64(sum(event_count)) AS events,
    quantilesTDigestState(0.5, 0.9, 0.99)(toFloat64(dateDiff('millisecond', first_event_at, created_at))) AS latency_ms,
    max(toFloat64(dateDiff('millisecond', first_event_at, created_at))) AS max_latency_ms
FROM ${database}.wakes
WHERE first_event_at > toDateTime64(0, 3, 'UTC')
GROUP BY minute, app, platform;
