-- receipt_coverage: accepted deliveries confirmed by a device receipt, and how fast, per app and platform.
-- Of the deliveries the provider accepted, how many the device confirmed with a receipt and how
-- long that took (DESIGN §7 loss: "accepted deliveries without a device receipt"; meaningful only
-- for apps whose notification extension sends receipts).
-- Parameters (name, type, default, meaning; defaults: the last hour, all apps):
--   {from:DateTime64(3)} = now-1h   accepted deliveries created in [from, to), UTC
--   {to:DateTime64(3)} = now        end of that range (exclusive)
--   {horizon_s:UInt32} = 600        how long after `to` receipts still count (s)
--   {app:String} = ''               only this app; '' for all
-- Columns: app, platform, accepted, receipted, missing, receipted_ratio, and p50/p90/p99 of the
--   time from the accepted delivery to the receipt reaching ingest (ms).
WITH
    d AS (
        SELECT wake_id, app, platform, min(created_at) AS accepted_at
        FROM deliveries FINAL
        WHERE outcome = 'ACCEPTED'
          AND created_at >= {from:DateTime64(3)} AND created_at < {to:DateTime64(3)}
          AND ({app:String} = '' OR app = {app:String})
        GROUP BY wake_id, app, platform
    ),
    r AS (
        SELECT wake_id, min(created_at) AS receipt_at
        FROM receipts FINAL
        WHERE created_at >= {from:DateTime64(3)}
          AND created_at < {to:DateTime64(3)} + toIntervalSecond({horizon_s:UInt32})
          AND wake_id IN (SELECT wake_id FROM d)
        GROUP BY wake_id
    ),
    j AS (
        SELECT d.app AS app, d.platform AS platform, r.wake_id != '' AS has_receipt,
               toFloat64(dateDiff('millisecond', d.accepted_at, r.receipt_at)) AS ms
        FROM d
        LEFT JOIN r ON r.wake_id = d.wake_id
    )
SELECT
    app,
    platform,
    count() AS accepted,
    countIf(has_receipt) AS receipted,
    toUInt64(accepted - receipted) AS missing,
    round(receipted / accepted, 4) AS receipted_ratio,
    quantilesIf(0.5, 0.9, 0.99)(ms, has_receipt) AS q,
    q[1] AS p50_ms,
    q[2] AS p90_ms,
    q[3] AS p99_ms
FROM j
GROUP BY app, platform
ORDER BY app, platform
