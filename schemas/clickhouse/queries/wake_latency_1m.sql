-- wake_latency_1m: coalescing latency (first covered event -> wake) per minute, app, platform, from the rollup.
-- wake created_at - first_event_at, i.e. how long the oldest event a wake covers waited for it;
-- cheap over long ranges. Approximate under replays (see migration 0002); for exact
-- end-to-end numbers use latency_quantiles.
-- Parameters (name, type, default, meaning; defaults: the last hour, all apps):
--   {from:DateTime64(3)} = now-1h   minutes in [from, to), UTC
--   {to:DateTime64(3)} = now        end of that range (exclusive)
--   {app:String} = ''               only this app; '' for all
-- Columns: minute, app, platform, wakes, events, p50_ms, p90_ms, p99_ms, max_ms.
SELECT
    minute,
    app,
    platform,
    sum(wakes) AS wakes,
    sum(events) AS events,
    quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms) AS q,
    q[1] AS p50_ms,
    q[2] AS p90_ms,
    q[3] AS p99_ms,
    max(max_latency_ms) AS max_ms
FROM wake_latency_1m
WHERE minute >= {from:DateTime64(3)} AND minute < {to:DateTime64(3)}
  AND ({app:String} = '' OR app = {app:String})
GROUP BY minute, app, platform
ORDER BY minute, app, platform
