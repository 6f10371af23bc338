-- stats_summary: events, wakes, delivered share, lost events and stage latencies: in total, per app and platform, and per XMPP server.
-- What `wakepushctl stats` prints. Each event accepted in [from, to) is followed through the
-- pipeline: the wake that covers it (the wake listing its id, else the device's first wake
-- created at or after its acceptance; event_ids holds at most 64 ids), that wake's first
-- ACCEPTED delivery, and the first device receipt for that wake. Latencies are per event, so
-- they are what a notification went through:
--   publish_to_wake      event accepted by ingest -> its wake created by the coalescer
--   wake_to_provider     wake created -> first delivery the provider (APNs/FCM) accepted
--   provider_to_receipt  that delivery -> the device's receipt reaching ingest (apps that send receipts)
-- Rows (GROUPING SETS): level 'total' (app, platform, sender empty), 'app' (per app and platform,
-- sender empty) and 'server' (per app, platform and sender: the XMPP server domain or HTTP tenant
-- that published). wakes counts distinct wakes covering the row's events, so a wake covering
-- events of two servers counts for each.
-- Parameters (name, type, default, meaning; defaults: the last hour, all apps):
--   {from:DateTime64(3)} = now-1h        events accepted in [from, to), UTC
--   {to:DateTime64(3)} = now             end of that range (exclusive)
--   {horizon_s:UInt32} = 600             how long after `to` wakes, deliveries and receipts still count (s)
--   {min_interval_ms:UInt32} = 10000     the coalescing interval (ms; the apps file's default 10s)
--   {slack_ms:UInt32} = 5000             processing time allowed on top of it (ms)
--   {app:String} = ''                    only this app; '' for all
-- Columns: level, app, platform, sender, events, wakes, wakes_per_event, delivered (events whose
--   wake has an accepted delivery), delivered_share, uncovered (events with no wake within
--   min_interval + slack: lost or late, DESIGN §5), pending (no wake yet, but still within
--   min_interval + slack of now), receipted (events whose wake has a receipt), and p50/p90/p99
--   in ms of each stage (NaN when no event reached that stage).
WITH
    ev AS (
        SELECT id, device_id, app, platform, sender, accepted_at
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
        SELECT event_id, argMin(id, created_at) AS wake_id, min(created_at) AS wake_at
        FROM wk ARRAY JOIN event_ids AS event_id
        GROUP BY event_id
    ),
    next_wake AS (
        SELECT ev.id AS event_id, wk.id AS wake_id, wk.created_at AS wake_at
        FROM ev ASOF INNER JOIN wk ON ev.device_id = wk.device_id AND wk.created_at >= ev.accepted_at
    ),
    covered AS (
        SELECT ev.id AS event_id, ev.app AS app, ev.platform AS platform, ev.sender AS sender,
               ev.accepted_at AS accepted_at,
               if(listed.wake_id != '', listed.wake_id, next_wake.wake_id) AS wake_id,
               if(listed.wake_id != '', listed.wake_at, next_wake.wake_at) AS wake_at
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
          AND wake_id IN (SELECT wake_id FROM covered WHERE wake_id != '')
        GROUP BY wake_id
    ),
    receipted AS (
        SELECT wake_id, min(created_at) AS receipt_at
        FROM receipts FINAL
        WHERE created_at >= {from:DateTime64(3)}
          AND created_at < {to:DateTime64(3)} + toIntervalSecond({horizon_s:UInt32})
          AND wake_id IN (SELECT wake_id FROM delivered)
        GROUP BY wake_id
    ),
    j AS (
        SELECT c.app AS app, c.platform AS platform, c.sender AS sender, c.wake_id AS wake_id,
               c.wake_id != '' AS has_wake,
               has_wake AND c.wake_at <= c.accepted_at + toIntervalMillisecond({min_interval_ms:UInt32} + {slack_ms:UInt32}) AS in_time,
               c.accepted_at + toIntervalMillisecond({min_interval_ms:UInt32} + {slack_ms:UInt32}) <= now64(3) AS due,
               d.wake_id != '' AS is_delivered,
               r.wake_id != '' AS has_receipt,
               toFloat64(dateDiff('millisecond', c.accepted_at, c.wake_at)) AS publish_to_wake_ms,
               toFloat64(dateDiff('millisecond', c.wake_at, d.delivered_at)) AS wake_to_provider_ms,
               toFloat64(dateDiff('millisecond', d.delivered_at, r.receipt_at)) AS provider_to_receipt_ms
        FROM covered AS c
        LEFT JOIN delivered AS d ON d.wake_id = c.wake_id
        LEFT JOIN receipted AS r ON r.wake_id = c.wake_id
    )
SELECT
    multiIf(grouping(app, platform, sender) = 7, 'total', grouping(sender) = 1, 'app', 'server') AS level,
    app,
    platform,
    sender,
    count() AS events,
    uniqExactIf(wake_id, has_wake) AS wakes,
    round(wakes / events, 4) AS wakes_per_event,
    countIf(is_delivered) AS delivered,
    round(delivered / events, 4) AS delivered_share,
    countIf(NOT in_time AND (has_wake OR due)) AS uncovered,
    countIf(NOT has_wake AND NOT due) AS pending,
    countIf(has_receipt) AS receipted,
    round(quantilesIf(0.5, 0.9, 0.99)(publish_to_wake_ms, has_wake)[1], 1) AS publish_to_wake_p50_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(publish_to_wake_ms, has_wake)[2], 1) AS publish_to_wake_p90_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(publish_to_wake_ms, has_wake)[3], 1) AS publish_to_wake_p99_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(wake_to_provider_ms, is_delivered)[1], 1) AS wake_to_provider_p50_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(wake_to_provider_ms, is_delivered)[2], 1) AS wake_to_provider_p90_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(wake_to_provider_ms, is_delivered)[3], 1) AS wake_to_provider_p99_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(provider_to_receipt_ms, has_receipt)[1], 1) AS provider_to_receipt_p50_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(provider_to_receipt_ms, has_receipt)[2], 1) AS provider_to_receipt_p90_ms,
    round(quantilesIf(0.5, 0.9, 0.99)(provider_to_receipt_ms, has_receipt)[3], 1) AS provider_to_receipt_p99_ms
FROM j
GROUP BY GROUPING SETS ((), (app, platform), (app, platform, sender))
ORDER BY level = 'total' DESC, app, platform, level = 'app' DESC, sender
