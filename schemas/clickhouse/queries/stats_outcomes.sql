-- stats_outcomes: delivery records by outcome and reason, in total and per app and platform.
-- What `wakepushctl stats` prints under "outcomes": every delivery attempt the sender recorded
-- in [from, to) (a wake retried three times counts three records), with the provider's reason
-- ('' when accepted; the APNs/FCM reason or the sender's otherwise) and HTTP status.
-- Rows (GROUPING SETS): level 'total' (app and platform empty) and 'app' (per app and platform).
-- Parameters (name, type, default, meaning; defaults: the last hour, all apps):
--   {from:DateTime64(3)} = now-1h   delivery records created in [from, to), UTC
--   {to:DateTime64(3)} = now        end of that range (exclusive)
--   {app:String} = ''               only this app; '' for all
-- Columns: level, app, platform, outcome, reason, deliveries (records), wakes (distinct wakes
--   they belong to), share (of the level's, app's and platform's delivery records),
--   status_codes (the distinct HTTP statuses seen, 0 when no HTTP answer), provider_p50_ms and
--   provider_p99_ms (provider latency, over records with a provider call).
SELECT
    if(grouping(app, platform) = 3, 'total', 'app') AS level,
    app,
    platform,
    outcome,
    reason,
    count() AS deliveries,
    uniqExact(wake_id) AS wakes,
    round(deliveries / sum(deliveries) OVER (PARTITION BY level, app, platform), 4) AS share,
    arraySort(groupUniqArray(status_code)) AS status_codes,
    round(quantilesIf(0.5, 0.99)(provider_latency_ms, provider_latency_ms > 0)[1], 1) AS provider_p50_ms,
    round(quantilesIf(0.5, 0.99)(provider_latency_ms, provider_latency_ms > 0)[2], 1) AS provider_p99_ms
FROM deliveries FINAL
WHERE created_at >= {from:DateTime64(3)} AND created_at < {to:DateTime64(3)}
  AND ({app:String} = '' OR app = {app:String})
GROUP BY GROUPING SETS ((outcome, reason), (app, platform, outcome, reason))
ORDER BY grouping(app, platform) DESC, app, platform, deliveries DESC, outcome, reason
