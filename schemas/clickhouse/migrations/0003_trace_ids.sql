-- 0003: trace context of every record, and the registration id.
--
-- trace_id / span_id: the W3C trace context (lower-case hex, 32 and 16 characters) that the
-- record's Kafka headers carry (traceparent, written by the producer span "send <topic>", so
-- span_id is that producer span, a child of the stage's own span). Empty when the record came
-- without a trace context or its trace was not sampled (it is then in no trace backend, and an
-- empty string costs nothing to store). From a row to its trace: <jaeger>/trace/<trace_id>;
-- from a trace to its rows:
--   SELECT 'event' AS kind, id FROM events WHERE trace_id = '<trace_id>'
--   UNION ALL SELECT 'wake', id FROM wakes WHERE trace_id = '<trace_id>'
--   UNION ALL SELECT 'delivery', id FROM deliveries WHERE trace_id = '<trace_id>' …
-- which the bloom_filter skip indexes keep cheap (granules whose filter excludes the id are not
-- read). The index applies to parts written after this migration; rows written before it have
-- empty trace ids anyway.
--
-- registrations.registration_id: registration records are keyed "<device_id>/<registration_id>"
-- (one account's subscription on the device); '' for records without one (older producers,
-- fpush-style token nodes).
--
-- Every statement is ADD … IF NOT EXISTS: it works on tables that already hold rows (existing
-- rows read the default '') and is harmless when run again.

ALTER TABLE ${database}.events
    ADD COLUMN IF NOT EXISTS trace_id String DEFAULT '' COMMENT 'W3C trace id (32 hex) of the record; empty when absent or not sampled',
    ADD COLUMN IF NOT EXISTS span_id String DEFAULT '' COMMENT 'span id (16 hex) of the span that produced the record; empty when absent or not sampled',
    ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter GRANULARITY 4;

ALTER TABLE ${database}.wakes
    ADD COLUMN IF NOT EXISTS trace_id String DEFAULT '' COMMENT 'W3C trace id (32 hex) of the record; empty when absent or not sampled',
    ADD COLUMN IF NOT EXISTS span_id String DEFAULT '' COMMENT 'span id (16 hex) of the span that produced the record; empty when absent or not sampled',
    ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter GRANULARITY 4;

ALTER TABLE ${database}.deliveries
    ADD COLUMN IF NOT EXISTS trace_id String DEFAULT '' COMMENT 'W3C trace id (32 hex) of the record; empty when absent or not sampled',
    ADD COLUMN IF NOT EXISTS span_id String DEFAULT '' COMMENT 'span id (16 hex) of the span that produced the record; empty when absent or not sampled',
    ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter GRANULARITY 4;

ALTER TABLE ${database}.receipts
    ADD COLUMN IF NOT EXISTS trace_id String DEFAULT '' COMMENT 'W3C trace id (32 hex) of the record; empty when absent or not sampled',
    ADD COLUMN IF NOT EXISTS span_id String DEFAULT '' COMMENT 'span id (16 hex) of the span that produced the record; empty when absent or not sampled',
    ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter GRANULARITY 4;

ALTER TABLE ${database}.dead_letters
    ADD COLUMN IF NOT EXISTS trace_id String DEFAULT '' COMMENT 'W3C trace id (32 hex) of the dead letter record; empty when absent or not sampled',
    ADD COLUMN IF NOT EXISTS span_id String DEFAULT '' COMMENT 'span id (16 hex) of the span that produced the dead letter; empty when absent or not sampled',
    ADD INDEX IF NOT EXISTS trace_id_idx trace_id TYPE bloom_filter GRANULARITY 4;

ALTER TABLE ${database}.registrations
    ADD COLUMN IF NOT EXISTS registration_id String DEFAULT '' COMMENT 'one account''s registration on the device (Kafka key <device_id>/<registration_id>); empty when none' AFTER device_id;
