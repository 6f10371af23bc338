-- uncovered_events: accepted events no wake covered within min_interval + slack (DESIGN §5 "no loss").
-- An event is uncovered when no wake of the same device was created at or after its acceptance
-- and within min_interval + slack of it. Expect no rows; each row is a lost or late notification.
-- Parameters (name, type, default, meaning; defaults: the hour before the last minute, all apps):
--   {from:DateTime64(3)} = now-61m     events accepted in [from, to), UTC
--   {to:DateTime64(3)} = now-1m        end of that range (exclusive); pick it at least
--                                      min_interval + slack in the past, or recent events still
--                                      waiting for their wake show up
--   {min_interval_ms:UInt32} = 10000   the app's coalescing interval (ms; the apps file's default 10s)
--   {slack_ms:UInt32} = 5000           allowed processing time on top of it (ms)
--   {app:String} = ''                  only this app; '' for all
-- Columns: event_id, accepted_at, device_id, app, platform, sender, urgent, next_wake_at (NULL
--   when no wake followed at all), wait_ms (to the next wake, NULL when none), device_state
--   (the device's latest registration state: events of UNREGISTERED devices get no wake by design).
WITH
    ev AS (
        SELECT id, accepted_at, device_id, app, platform, sender, urgent
        FROM events FINAL
        WHERE accepted_at >= {from:DateTime64(3)} AND accepted_at < {to:DateTime64(3)}
          AND ({app:String} = '' OR app = {app:String})
    ),
    wk AS (
        SELECT device_id, created_at
        FROM wakes FINAL
        WHERE created_at >= {from:DateTime64(3)}
          AND created_at < {to:DateTime64(3)} + toIntervalMillisecond({min_interval_ms:UInt32} + {slack_ms:UInt32} + 1)
          AND device_id IN (SELECT device_id FROM ev)
    ),
    reg AS (
        SELECT device_id, argMax(state, created_at) AS state
        FROM registrations FINAL
        WHERE device_id IN (SELECT device_id FROM ev)
        GROUP BY device_id
    ),
    next_wake AS (
        SELECT ev.id AS event_id, ev.accepted_at AS accepted_at, ev.device_id AS device_id, ev.app AS app,
               ev.platform AS platform, ev.sender AS sender, ev.urgent AS urgent,
               wk.device_id != '' AS has_wake, wk.created_at AS wake_at
        FROM ev
        ASOF LEFT JOIN wk ON ev.device_id = wk.device_id AND wk.created_at >= ev.accepted_at
    )
SELECT
    n.event_id AS event_id,
    n.accepted_at AS accepted_at,
    n.device_id AS device_id,
    n.app AS app,
    n.platform AS platform,
    n.sender AS sender,
    n.urgent AS urgent,
    if(n.has_wake, toNullable(n.wake_at), NULL) AS next_wake_at,
    if(n.has_wake, toNullable(dateDiff('millisecond', n.accepted_at, n.wake_at)), NULL) AS wait_ms,
    if(reg.device_id = '', 'UNKNOWN', toString(reg.state)) AS device_state
FROM next_wake AS n
LEFT JOIN reg ON reg.device_id = n.device_id
WHERE NOT n.has_wake
   OR n.wake_at > n.accepted_at + toIntervalMillisecond({min_interval_ms:UInt32} + {slack_ms:UInt32})
ORDER BY accepted_at, event_id
