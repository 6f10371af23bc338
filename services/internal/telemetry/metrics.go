package telemetry

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves reg on /metrics. A scraper that asks for OpenMetrics
// (Accept: application/openmetrics-text, as Prometheus does) gets it, and with it the exemplars
// the OpenTelemetry SDK keeps on histogram buckets: by default (OTEL_METRICS_EXEMPLAR_FILTER
// unset = trace_based) a measurement recorded inside a sampled span carries that span's trace_id
// and span_id, so a latency spike on a dashboard leads to a concrete trace. The classic
// Prometheus text format, which cannot carry exemplars, stays the answer to every other Accept
// header. _created series are left out (EnableOpenMetricsTextCreatedSamples false): nothing reads
// them and they would double the series count.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
	})
}
