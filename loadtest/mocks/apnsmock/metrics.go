package apnsmock

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds the Prometheus collectors of one Server (own registry, so
// several servers can run in one process).
type metrics struct {
	reg         *prometheus.Registry
	byReason    map[string]prometheus.Counter // pre-resolved apnsmock_requests_total children
	accepted    prometheus.Counter
	faults      *prometheus.CounterVec
	connsTotal  prometheus.Counter
	jwtVerified prometheus.Counter
	jwtRejected prometheus.Counter
	jwtCacheHit prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apnsmock_requests_total",
		Help: "APNs requests answered, by HTTP status and APNs reason (\"\" for accepted pushes).",
	}, []string{"status", "reason"})
	m := &metrics{
		reg:      reg,
		byReason: make(map[string]prometheus.Counter, len(reasonStatus)),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apnsmock_faults_injected_total",
			Help: "Injected faults by kind (429 per-device limit, 500, 503, stall, reset, drop, goaway, override-<status> storms).",
		}, []string{"kind"}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apnsmock_connections_total", Help: "TLS connections accepted.",
		}),
	}
	for reason, status := range reasonStatus {
		m.byReason[reason] = requests.WithLabelValues(strconv.Itoa(status), reason)
	}
	m.accepted = m.byReason[""]
	jwt := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apnsmock_jwt_verifications_total",
		Help: "Provider token checks: verified / rejected signatures and cache hits.",
	}, []string{"result"})
	m.jwtVerified = jwt.WithLabelValues("verified")
	m.jwtRejected = jwt.WithLabelValues("rejected")
	m.jwtCacheHit = jwt.WithLabelValues("cache_hit")
	for _, k := range []string{"429", "500", "503", "stall", "reset", "drop", "goaway", "override-429", "override-500", "override-503"} {
		m.faults.WithLabelValues(k)
	}
	reg.MustRegister(
		requests, m.faults, m.connsTotal, jwt,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apnsmock_connections_open", Help: "Open client connections.",
		}, func() float64 { return float64(s.conns.len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "apnsmock_pushes_recorded", Help: "Accepted pushes currently kept in memory.",
		}, func() float64 { return float64(s.store.len()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) rejected(reason string) {
	if c, ok := m.byReason[reason]; ok {
		c.Inc()
	}
}

func (m *metrics) fault(kind string) { m.faults.WithLabelValues(kind).Inc() }
