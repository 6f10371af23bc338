-- latency_quantiles: event accepted -> first accepted delivery, p50/p90/p99/max per minute, app, platform.
-- End-to-end push latency: from an event's acceptance by ingest (events.accepted_at) to the first
-- ACCEPTED delivery of the wake that covers it, by the minute of acceptance.
-- Coverage: a wake covers an event when its event_ids lists the event's id; since event_ids
-- holds at most 64 ids, an event no wake lists is covered by the device's first wake created at
-- or after the event's acceptance.
-- Parameters (name, type, default, meaning; defaults: the last hour, all apps):
--   {from:DateTime64(3)} = now-1h   events accepted in [from, to), UTC
--   {to:DateTime64(3)} = now        end of that range (exclusive)
--   {horizon_s:UInt32} = 3600       how long after `to` wakes and deliveries still count (s)
--   {app:String} = ''               only this app; '' for all
-- Columns: minute, app, platform, events, delivered (events whose wake has an accepted
--   delivery), undelivered, p50_ms, p90_ms, p99_ms, max_ms (over delivered events).
WITH
    ev AS (
        SELECT id, device_id, app, platform, accepted_at
        FROM events FINAL
        WHERE accepted_at >= {from:DateTime64(3)} AND accepted_at < {to:DateTime64(3)}
          AND ({app:String} = '' OR app = {app:String})
    ),
    wk AS (
        SELECT id, device_id, created_at, event_ids
        FROM wakes FINAL
        WHERE created_at >= {from:DateTime64(3)}
          AND created_at < {to:DateTime64(3)} + toIntervalSecond({horizon_s:UInt32})
          AND device_id IN (SELECT device_id FROM ev)
    ),
    listed AS (
        SELECT event_id, argMin(id, created_at) AS wake_id
        FROM wk ARRAY JOIN event_ids AS event_id
        GROUP BY event_id
    ),
    next_wake AS (
        SELECT ev.id AS event_id, wk.id AS wake_id
        FROM ev ASOF INNER JOIN wk ON ev.device_id = wk.device_id AND wk.created_at >= ev.accepted_at
    ),
    covered AS (
        SELECT ev.id AS event_id, ev.app AS app, ev.platform AS platform, ev.accepted_at AS accepted_at,
               if(listed.wake_id != '', listed.wake_id, next_wake.wake_id) AS wake_id
        FROM ev
        LEFT JOIN listed ON listed.event_id = ev.id
        LEFT JOIN next_wake ON next_wake.event_id = ev.id
    ),
    delivered AS (
        SELECT wake_id, min(created_at) AS delivered_at
        FROM deliveries FINAL
        WHERE outcome = 'ACCEPTED'
          AND created_at >= {from:DateTime64(3)}
          AND created_at < {to:DateTime64(3)} + toIntervalSecond({horizon_s:UInt32})
          AND wake_id IN (SELECT wake_id FROM covered)
        GROUP BY wake_id
    ),
    latency AS (
        SELECT covered.app AS app, covered.platform AS platform, toStartOfMinute(covered.accepted_at) AS minute,
               delivered.wake_id != '' AS is_delivered,
               toFloat64(dateDiff('millisecond', covered.accepted_at, delivered.delivered_at)) AS ms
        FROM covered
        LEFT JOIN delivered ON delivered.wake_id = covered.wake_id AND covered.wake_id != ''
    )
SELECT
    minute,
    app,
    platform,
    count() AS events,
    countIf(is_delivered) AS delivered,
    toUInt64(events - delivered) AS undelivered,
    quantilesIf(0.5, 0.9, 0.99)(ms, is_delivered) AS q,
    q[1] AS p50_ms,
    q[2] AS p90_ms,
    q[3] AS p99_ms,
    maxIf(ms, is_delivered) AS max_ms
FROM latency
GROUP BY minute, app, platform
ORDER BY minute, app, platform
