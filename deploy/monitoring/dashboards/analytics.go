package dashboards

// appFilter restricts a query to the apps chosen in the $app variable (multi-value, "All" =
// every listed app; Grafana formats ${app:singlequote} as 'a','b').
const appFilter = "app IN (${app:singlequote})"

// analytics is the analysts' dashboard on ClickHouse: the per-minute rollups of migrations
// 0002/0004 (AggregatingMergeTree: always sum() / quantilesTDigestMerge() with GROUP BY) and,
// for uncovered events, the raw tables. Time series queries return (time, series label,
// value) rows, which the plugin turns into one series per label.
func analytics() Dashboard {
	return Dashboard{
		File:        "wakepush-analytics.json",
		UID:         "wakepush-analytics",
		Title:       "wakepush / analytics",
		Description: "wakepush traffic, delivery outcomes and latencies from ClickHouse (rollups events_1m, deliveries_1m, dead_letters_1m, wake_latency_1m; docs/monitoring.md)",
		Datasource:  ClickHouse,
		Rows: []Row{
			{Title: "Traffic", Panels: []Panel{
				{Title: "Events by platform", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT $__timeInterval(minute) AS time, platform, sum(events) AS events
FROM events_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY time, platform
ORDER BY time, platform`}}},
				{Title: "Wakes per event and urgent share", Unit: "percentunit", MustHaveData: true,
					Description: "coalescing: wakes / events covered (1 = no coalescing); urgent: events marked urgent, which bypass coalescing",
					Queries: []Query{
						{Expr: `SELECT $__timeInterval(minute) AS time, sum(wakes) / sum(events) AS wakes_per_event
FROM wake_latency_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY time
ORDER BY time`},
						{Expr: `SELECT $__timeInterval(minute) AS time, sum(urgent) / sum(events) AS urgent_share
FROM events_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY time
ORDER BY time`},
					}},
				{Title: "Load by XMPP server (sender)", Viz: "table", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT sender, source, sum(events) AS events, sum(urgent) AS urgent
FROM events_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY sender, source
ORDER BY events DESC
LIMIT 50`}}},
				{Title: "Events by app", Viz: "table", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT app, platform, sum(events) AS events
FROM events_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY app, platform
ORDER BY events DESC`}}},
			}},
			{Title: "Deliveries", Panels: []Panel{
				{Title: "Deliveries by outcome", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT $__timeInterval(minute) AS time, outcome, sum(deliveries) AS deliveries
FROM deliveries_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY time, outcome
ORDER BY time, outcome`}}},
				{Title: "Outcomes by reason", Viz: "table", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT app, platform, outcome, reason, sum(deliveries) AS deliveries,
    round(deliveries / sum(deliveries) OVER (PARTITION BY app, platform), 4) AS share
FROM deliveries_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY app, platform, outcome, reason
ORDER BY app, platform, deliveries DESC`}}},
				{Title: "Delivered share (accepted / final outcomes)", Unit: "percentunit", Viz: "stat", Width: 6, MustHaveData: true,
					Queries: []Query{{Expr: `SELECT sumIf(deliveries, outcome = 'ACCEPTED') / sumIf(deliveries, outcome != 'RETRY') AS delivered_share
FROM deliveries_1m
WHERE $__timeFilter(minute) AND ` + appFilter}}},
				{Title: "Uncovered events (no wake within 2 × min_interval)", Viz: "stat", Width: 6, MustHaveData: true,
					Description: "events accepted in the range (up to 1 minute ago) that no wake of their device followed within 20 s (twice the default coalescing interval; see the uncovered_events query for the exact per-app check). Expect 0",
					Queries: []Query{{Expr: `WITH ev AS (
    SELECT id, device_id, accepted_at FROM events FINAL
    WHERE $__timeFilter(accepted_at) AND accepted_at < now64(3) - INTERVAL 1 MINUTE AND ` + appFilter + `
), wk AS (
    SELECT device_id, created_at FROM wakes FINAL
    WHERE created_at >= $__fromTime AND device_id IN (SELECT device_id FROM ev)
)
SELECT count() AS uncovered
FROM ev ASOF LEFT JOIN wk ON ev.device_id = wk.device_id AND wk.created_at >= ev.accepted_at
WHERE wk.device_id = '' OR wk.created_at > ev.accepted_at + INTERVAL 20 SECOND`}}},
			}},
			{Title: "Latency", Panels: []Panel{
				{Title: "Publish → wake (oldest covered event)", Unit: "ms", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `SELECT $__timeInterval(minute) AS time,
    quantilesTDigestMerge(0.5, 0.9, 0.99)(latency_ms) AS q, q[1] AS p50, q[2] AS p90, q[3] AS p99
FROM wake_latency_1m
WHERE $__timeFilter(minute) AND ` + appFilter + `
GROUP BY time
ORDER BY time`}}},
				{Title: "Wake → provider answer", Unit: "ms", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `SELECT $__timeInterval(minute) AS time,
    quantilesTDigestMerge(0.5, 0.9, 0.99)(wake_to_provider_ms) AS q, q[1] AS p50, q[2] AS p90, q[3] AS p99
FROM deliveries_1m
WHERE $__timeFilter(minute) AND ` + appFilter + ` AND outcome = 'ACCEPTED'
GROUP BY time
ORDER BY time`}}},
				{Title: "Provider call latency by platform", Unit: "ms", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `SELECT $__timeInterval(minute) AS time, platform,
    quantilesTDigestMerge(0.5, 0.9, 0.99)(provider_latency_ms)[3] AS p99
FROM deliveries_1m
WHERE $__timeFilter(minute) AND ` + appFilter + ` AND outcome != 'DROPPED'
GROUP BY time, platform
ORDER BY time, platform`}}},
			}},
			{Title: "Dead letters", Panels: []Panel{
				{Title: "Dead letters by stage and source topic", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT $__timeInterval(minute) AS time, concat(stage, ' ', source_topic) AS stage_topic, sum(dead_letters) AS dead_letters
FROM dead_letters_1m
WHERE $__timeFilter(minute)
GROUP BY time, stage_topic
ORDER BY time, stage_topic`}}},
				{Title: "Dead letters by reason", Viz: "table", MustHaveData: true,
					Queries: []Query{{Expr: `SELECT stage, source_topic, reason, count() AS dead_letters, max(created_at) AS last
FROM dead_letters FINAL
WHERE $__timeFilter(created_at)
GROUP BY stage, source_topic, reason
ORDER BY dead_letters DESC
LIMIT 50`}}},
			}},
		},
	}
}
