package main

import (
	"context"
	"time"
)

// The dev stack's addresses (README, "local component"). In args, env and
// readiness URLs, {addr:NAME} expands to 127.0.0.1:PORT and {port:NAME} to
// PORT, both shifted by -port-offset; {data} is the -data directory and
// {chdb-lib} the verified libchdb.so.
var ports = map[string]int{
	"kafka":           19092,
	"clickhouse-tcp":  19000,
	"clickhouse-http": 18123,
	"apns":            18443,
	"ingest-http":     18080,
	"ingest-admin":    18091,
	"coalescer-admin": 18092,
	"sender-admin":    18093,
	"recorder-admin":  18094,
	// Profiling (WAKEPUSH_PPROF_ADDR) is off by default in the services; the dev stack turns it
	// on, on loopback.
	"ingest-pprof":    18191,
	"coalescer-pprof": 18192,
	"sender-pprof":    18193,
	"recorder-pprof":  18194,
	// Jaeger (traces): OTLP/HTTP in, query API out, its gRPC query API and health check.
	"jaeger-otlp":   18318,
	"jaeger-query":  18686,
	"jaeger-grpc":   18685,
	"jaeger-health": 18133,
}

// Fixed development secrets: not secret, only for the local stack.
const (
	devNodeKeys    = "dev1:d2FrZXB1c2ggZGV2IG5vZGUga2V5IGRldjEgIzAwMDE=" // "wakepush dev node key dev1 #0001"
	devDeviceIDKey = "d2FrZXB1c2ggZGV2IGRldmljZS1pZCBrZXkgIzAwMDE="      // "wakepush dev device-id key #0001"
	devAPNsTeamID  = "WAKEPUSHTM"
	devAPNsKeyID   = "DEVKEY0001"
)

// stackEnv is given to every child before its own env. The supervisor's
// environment overrides both, so `WAKEPUSH_LOG_FORMAT=json make run` works.
var stackEnv = []string{
	"WAKEPUSH_KAFKA_BROKERS={addr:kafka}",
	"WAKEPUSH_APPS_FILE=deploy/local/apps.yaml",
	"WAKEPUSH_LOG_FORMAT=text",
}

// traceEnv is given to the traced components (the services) when Jaeger runs: OTLP/HTTP traces
// to it (traces only: Jaeger takes no metrics), exported every 500 ms so that `make demo-push`
// finds its trace at once. The SDK's default sampler applies (parentbased_always_on); the
// supervisor's environment overrides all of it (OTEL_TRACES_SAMPLER=…, docs/tracing.md).
var traceEnv = []string{
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://{addr:jaeger-otlp}/v1/traces",
	"OTEL_BSP_SCHEDULE_DELAY=500",
	"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=dev",
}

// component is one child process of the dev stack.
type component struct {
	name string
	pkg  string // main package, built into {data}/bin/<last element>
	// bin, instead of pkg, is a binary built elsewhere (expanded): Jaeger, from the user cache.
	bin string
	// traced components get traceEnv when Jaeger is part of the stack.
	traced bool
	args   []string // expanded
	env    []string // defaults, expanded; the supervisor's environment overrides them
	// pinned env is set last: per-process settings whose variable name every
	// service shares (the readiness URL depends on them).
	pinned []string
	// ready is the readiness check: tcp://HOST:PORT (connect) or an
	// http(s) URL that must answer 200.
	ready string
	// readyCA is a PEM CA file to trust for an https ready URL.
	readyCA string
	timeout time.Duration
	// prepare runs before the process starts.
	prepare func(ctx context.Context, s *stack) error
}

const (
	local = "github.com/wakepush/wakepush/deploy/local/cmd/"
	svc   = "github.com/wakepush/wakepush/services/"
)

// components is the dev stack, in start order (stopped in reverse).
var components = []component{
	{
		// Started only when its binary is in the user cache (see traces.go).
		name:    "jaeger",
		bin:     "{jaeger-bin}",
		args:    []string{"--config", "file:{data}/jaeger/jaeger.yaml"},
		ready:   "http://{addr:jaeger-health}/status",
		timeout: 60 * time.Second,
		prepare: prepareJaeger,
	},
	{
		name:    "kafka",
		pkg:     local + "kafka-broker",
		args:    []string{"-addr", "{addr:kafka}", "-data-dir", "{data}/kafka"},
		ready:   "tcp://{addr:kafka}",
		timeout: 30 * time.Second,
	},
	{
		name:    "clickhouse",
		pkg:     local + "chdb-server",
		args:    []string{"-lib", "{chdb-lib}", "-path", "{data}/clickhouse", "-tcp-port", "{port:clickhouse-tcp}", "-http-port", "{port:clickhouse-http}"},
		ready:   "http://{addr:clickhouse-http}/ping",
		timeout: 60 * time.Second,
		prepare: prepareClickHouse,
	},
	{
		name: "apns-mock",
		pkg:  "github.com/wakepush/wakepush/loadtest/cmd/apns-mock",
		args: []string{"-addr", "{addr:apns}", "-ca-out", "{data}/dev/apns-ca.pem",
			"-key", devAPNsTeamID + ":" + devAPNsKeyID + ":{data}/dev/apns-key.p8", "-topic", "im.wakepush.demo"},
		ready:   "https://{addr:apns}/control/healthz",
		readyCA: "{data}/dev/apns-ca.pem",
		timeout: 30 * time.Second,
		prepare: prepareAPNsKey,
	},
	{
		name:   "ingest",
		pkg:    svc + "ingest",
		traced: true,
		env: []string{
			"WAKEPUSH_INGEST_HTTP_ADDR={addr:ingest-http}",
			"WAKEPUSH_NODE_KEYS=" + devNodeKeys,
			"WAKEPUSH_DEVICE_ID_KEY=" + devDeviceIDKey,
			// The HTTP event API's tenant for `make demo-push` (wakepushctl demo's default token).
			"WAKEPUSH_INGEST_EVENT_TOKENS=dev:dev-event-token",
		},
		pinned:  []string{"WAKEPUSH_ADMIN_ADDR={addr:ingest-admin}", "WAKEPUSH_PPROF_ADDR={addr:ingest-pprof}"},
		ready:   "http://{addr:ingest-admin}/readyz",
		timeout: 60 * time.Second,
	},
	{
		name:    "coalescer",
		pkg:     svc + "coalescer",
		traced:  true,
		pinned:  []string{"WAKEPUSH_ADMIN_ADDR={addr:coalescer-admin}", "WAKEPUSH_PPROF_ADDR={addr:coalescer-pprof}"},
		ready:   "http://{addr:coalescer-admin}/readyz",
		timeout: 60 * time.Second,
	},
	{
		name:    "sender",
		pkg:     svc + "sender",
		traced:  true,
		pinned:  []string{"WAKEPUSH_ADMIN_ADDR={addr:sender-admin}", "WAKEPUSH_PPROF_ADDR={addr:sender-pprof}"},
		ready:   "http://{addr:sender-admin}/readyz",
		timeout: 60 * time.Second,
	},
	{
		name:    "recorder",
		pkg:     svc + "recorder",
		traced:  true,
		env:     []string{"WAKEPUSH_CLICKHOUSE_DSN=clickhouse://{addr:clickhouse-tcp}/wakepush"},
		pinned:  []string{"WAKEPUSH_ADMIN_ADDR={addr:recorder-admin}", "WAKEPUSH_PPROF_ADDR={addr:recorder-pprof}"},
		ready:   "http://{addr:recorder-admin}/readyz",
		timeout: 60 * time.Second,
	},
}
