package fcmmock

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one Server's Prometheus collectors (own registry).
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	faults       *prometheus.CounterVec
	tokensIssued atomic.Uint64
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fcmmock_requests_total",
			Help: "messages:send requests answered, by HTTP status and FCM error code (\"\" when accepted).",
		}, []string{"status", "code"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fcmmock_faults_injected_total",
			Help: "Injected faults by kind (per_device_429, 429, 500, 503).",
		}, []string{"kind"}),
	}
	m.reg.MustRegister(m.requests, m.faults, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fcmmock_tokens_issued_total", Help: "OAuth2 access tokens issued.",
	}, func() float64 { return float64(m.tokensIssued.Load()) }))
	return m
}

func (m *metrics) answered(status int, code string) {
	m.requests.WithLabelValues(strconv.Itoa(status), code).Inc()
}
