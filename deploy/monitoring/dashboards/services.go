package dashboards

// services is the SRE dashboard on the services' Prometheus metrics (names as on /metrics:
// OpenTelemetry names with dots as underscores, counters with _total, seconds histograms with
// _seconds). $__rate_interval and $app are Grafana's; `job` is the scrape job (one per service
// in the usual Kubernetes scrape configurations).
func services() Dashboard {
	return Dashboard{
		File:        "wakepush-services.json",
		UID:         "wakepush-services",
		Title:       "wakepush / services",
		Description: "wakepush pipeline health from the services' metrics: ingest → coalescer → sender → recorder (docs/monitoring.md)",
		Datasource:  Prometheus,
		Rows: []Row{
			{Title: "Ingest", Panels: []Panel{
				{Title: "Publishes by outcome", Unit: "reqps", MustHaveData: true,
					Description: "XEP-0357 publishes and HTTP events: accepted, rejected (the caller's fault or a dead device), failed (ours: the XMPP server retries)",
					Queries:     []Query{{Expr: `sum by (outcome) (rate(wakepush_ingest_publishes_total[$__rate_interval]))`, Legend: "{{outcome}}"}}},
				{Title: "Ingest refusals (failed publishes) by condition", Unit: "reqps",
					Description: "publishes ingest refused on its side: unavailable (Kafka did not acknowledge), overloaded (in-flight limit), shutting_down. Alert: WakepushIngestRefusingPublishes",
					Queries:     []Query{{Expr: `sum by (condition, source) (rate(wakepush_ingest_publishes_total{outcome="failed"}[$__rate_interval]))`, Legend: "{{source}} {{condition}}"}}},
				{Title: "Publishes in flight", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `sum by (source) (wakepush_ingest_publishes_inflight)`, Legend: "{{source}}"}}},
				{Title: "XMPP component connections", Width: 8, MustHaveData: true,
					Description: "1 per configured XEP-0114 connection while it is up, 0 while it is down. Alert: WakepushComponentDisconnected",
					Queries:     []Query{{Expr: `sum by (component_jid, server) (wakepush_ingest_component_connections)`, Legend: "{{component_jid}} @ {{server}}"}}},
				{Title: "Component IQ latency p99 by kind", Unit: "s", Width: 8,
					Queries: []Query{{Expr: `histogram_quantile(0.99, sum by (le, kind) (rate(wakepush_ingest_iq_duration_seconds_bucket[$__rate_interval])))`, Legend: "{{kind}}"}}},
			}},
			{Title: "Coalescer", Panels: []Panel{
				{Title: "Events by outcome", Unit: "ops", MustHaveData: true,
					Description: "events consumed from push.events: woke (a wake now), absorbed (joined a pending wake), duplicate",
					Queries:     []Query{{Expr: `sum by (outcome) (rate(wakepush_coalescer_events_total{app=~"$app"}[$__rate_interval]))`, Legend: "{{outcome}}"}}},
				{Title: "Wakes by reason", Unit: "ops", MustHaveData: true,
					Queries: []Query{{Expr: `sum by (reason) (rate(wakepush_coalescer_wakes_total{app=~"$app"}[$__rate_interval]))`, Legend: "{{reason}}"}}},
				{Title: "Events per wake (coalescing ratio)", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `sum(rate(wakepush_coalescer_wake_events_sum{app=~"$app"}[$__rate_interval])) / sum(rate(wakepush_coalescer_wake_events_count{app=~"$app"}[$__rate_interval]))`, Legend: "events per wake"}}},
				{Title: "Devices waiting for a trailing wake", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `sum(wakepush_coalescer_pending_devices)`, Legend: "pending"}}},
				{Title: "Consumer lag by topic", Width: 8, MustHaveData: true,
					Description: "records behind each partition's high watermark at the last fetch, summed per topic (coalescer: push.events, sender: push.wakes, recorder: every topic). Alert: WakepushConsumerLag",
					Queries: []Query{
						{Expr: `sum by (messaging_destination_name) (wakepush_coalescer_consumer_lag)`, Legend: "coalescer {{messaging_destination_name}}"},
						{Expr: `sum by (messaging_destination_name) (wakepush_sender_consumer_lag)`, Legend: "sender {{messaging_destination_name}}"},
						{Expr: `sum by (messaging_destination_name) (wakepush_recorder_consumer_lag)`, Legend: "recorder {{messaging_destination_name}}"},
					}},
			}},
			{Title: "Sender", Panels: []Panel{
				{Title: "Deliveries by outcome", Unit: "ops", MustHaveData: true,
					Queries: []Query{{Expr: `sum by (outcome) (rate(wakepush_sender_deliveries_total{app=~"$app"}[$__rate_interval]))`, Legend: "{{outcome}}"}}},
				{Title: "Delivery failures by reason (share of final outcomes)", Unit: "percentunit", MustHaveData: true,
					Description: "permanent, configuration and dead-lettered outcomes per reason, over all final outcomes (retries excluded). Alert: WakepushDeliveryFailureRatio",
					Queries:     []Query{{Expr: `sum by (reason) (rate(wakepush_sender_deliveries_total{app=~"$app", outcome=~"permanent|configuration|dead_lettered"}[$__rate_interval])) / scalar(sum(rate(wakepush_sender_deliveries_total{app=~"$app", outcome!="retry"}[$__rate_interval])))`, Legend: "{{reason}}"}}},
				{Title: "Provider latency", Unit: "s", Width: 8, MustHaveData: true,
					Queries: []Query{
						{Expr: `histogram_quantile(0.5, sum by (le) (rate(wakepush_sender_provider_duration_seconds_bucket{app=~"$app"}[$__rate_interval])))`, Legend: "p50"},
						{Expr: `histogram_quantile(0.9, sum by (le) (rate(wakepush_sender_provider_duration_seconds_bucket{app=~"$app"}[$__rate_interval])))`, Legend: "p90"},
						{Expr: `histogram_quantile(0.99, sum by (le) (rate(wakepush_sender_provider_duration_seconds_bucket{app=~"$app"}[$__rate_interval])))`, Legend: "p99"},
					}},
				{Title: "Wake age when the sender takes it", Unit: "s", Width: 8, MustHaveData: true,
					Description: "now - wake created_at when the sender starts on a wake: its backlog in time. Alert: WakepushWakeAge",
					Queries: []Query{
						{Expr: `histogram_quantile(0.5, sum by (le) (rate(wakepush_sender_wake_age_seconds_bucket[$__rate_interval])))`, Legend: "p50"},
						{Expr: `histogram_quantile(0.99, sum by (le) (rate(wakepush_sender_wake_age_seconds_bucket[$__rate_interval])))`, Legend: "p99"},
					}},
				{Title: "Provider configuration errors and paused apps", Width: 8, MustHaveData: true,
					Description: "answers that mean our configuration is wrong (bad key, topic, project); the app/environment is paused meanwhile. Alert: WakepushProviderConfigurationErrors",
					Queries: []Query{
						{Expr: `sum by (app, environment, reason) (increase(wakepush_sender_configuration_errors_total{app=~"$app"}[$__rate_interval]))`, Legend: "errors {{app}} {{environment}} {{reason}}"},
						{Expr: `sum by (app, environment) (wakepush_sender_paused{app=~"$app"})`, Legend: "paused {{app}} {{environment}}"},
					}},
				{Title: "Retries by reason", Unit: "ops", Width: 12,
					Queries: []Query{{Expr: `sum by (reason) (rate(wakepush_sender_retries_total{app=~"$app"}[$__rate_interval]))`, Legend: "{{reason}}"}}},
				{Title: "Dead letters by stage", Unit: "ops", Width: 12, MustHaveData: true,
					Description: "records sent to push.events.dlq (coalescer), push.wakes.dlq (sender) and records the recorder could not decode. Alert: WakepushDeadLetters",
					Queries: []Query{
						{Expr: `sum by (reason) (rate(wakepush_coalescer_dead_letters_total[$__rate_interval]))`, Legend: "coalescer {{reason}}"},
						{Expr: `sum by (reason) (rate(wakepush_sender_dead_letters_total[$__rate_interval]))`, Legend: "sender {{reason}}", Quiet: true},
						{Expr: `sum by (messaging_destination_name) (rate(wakepush_recorder_poison_records_total[$__rate_interval]))`, Legend: "recorder {{messaging_destination_name}}"},
					}},
			}},
			{Title: "Recorder and Kafka", Panels: []Panel{
				{Title: "Rows inserted into ClickHouse by table", Unit: "rowsps", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `sum by (db_collection_name) (rate(wakepush_recorder_rows_total[$__rate_interval]))`, Legend: "{{db_collection_name}}"}}},
				{Title: "ClickHouse insert latency p99 and errors", Unit: "s", Width: 8, MustHaveData: true,
					Queries: []Query{
						{Expr: `histogram_quantile(0.99, sum by (le) (rate(wakepush_recorder_insert_duration_seconds_bucket[$__rate_interval])))`, Legend: "p99"},
						{Expr: `sum(rate(wakepush_recorder_insert_errors_total[$__rate_interval]))`, Legend: "errors/s", Quiet: true},
					}},
				{Title: "Kafka produce latency p99 by service", Unit: "s", Width: 8, MustHaveData: true,
					Queries: []Query{{Expr: `histogram_quantile(0.99, sum by (le, job) (rate(wakepush_kafka_produce_duration_seconds_bucket[$__rate_interval])))`, Legend: "{{job}}"}}},
			}},
		},
	}
}
