-- undelivered_wakes: wakes with no accepted delivery, with what the sender did instead.
-- DESIGN §7 loss: "wakes without an accepted delivery".
-- Parameters (name, type, default, meaning; defaults: the last hour, all apps):
--   {from:DateTime64(3)} = now-1h   wakes created in [from, to), UTC
--   {to:DateTime64(3)} = now        end of that range (exclusive)
--   {horizon_s:UInt32} = 600        how long after `to` deliveries still count (s)
--   {app:String} = ''               only this app; '' for all
-- Columns: wake_id, created_at, device_id, app, platform, reason, event_count, attempts (delivery
--   records seen), last_outcome and last_reason ('' when no delivery record exists at all).
WITH
    wk AS (
        SELECT id, created_at, device_id, app, platform, reason, event_count
        FROM wakes FINAL
        WHERE created_at >= {from:DateTime64(3)} AND created_at < {to:DateTime64(3)}
          AND ({app:String} = '' OR app = {app:String})
    ),
    d AS (
        SELECT wake_id,
               count() AS attempts,
               countIf(outcome = 'ACCEPTED') AS accepted,
               argMax(outcome, created_at) AS last_outcome,
               argMax(reason, created_at) AS last_reason
        FROM deliveries FINAL
        WHERE created_at >= {from:DateTime64(3)}
          AND created_at < {to:DateTime64(3)} + toIntervalSecond({horizon_s:UInt32})
          AND wake_id IN (SELECT id FROM wk)
        GROUP BY wake_id
    )
SELECT
    wk.id AS wake_id,
    wk.created_at AS created_at,
    wk.device_id AS device_id,
    wk.app AS app,
    wk.platform AS platform,
    wk.reason AS reason,
    wk.event_count AS event_count,
    d.attempts AS attempts,
    toString(d.last_outcome) AS last_outcome,
    toString(d.last_reason) AS last_reason
FROM wk
LEFT JOIN d ON d.wake_id = wk.id
WHERE d.accepted = 0
ORDER BY created_at, wake_id
