// Package telemetry sets up OpenTelemetry for a service: a tracer provider (exporting by OTLP
// when the standard OTEL_EXPORTER_OTLP_* variables name an endpoint, otherwise only creating
// spans so trace context still flows through Kafka and logs), a meter provider served on
// /metrics in Prometheus format (and pushed by OTLP when configured), and the W3C
// TraceContext + Baggage propagator.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Providers holds what Setup made. Shutdown flushes and stops the exporters.
type Providers struct {
	Tracer         *sdktrace.TracerProvider
	Meter          *sdkmetric.MeterProvider
	MetricsHandler http.Handler
}

// OTLPConfigured reports whether the standard OTLP environment names a traces/metrics endpoint.
func OTLPConfigured(signal string) bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

// Samplers are the OTEL_TRACES_SAMPLER values the SDK implements (docs/tracing.md says what each
// costs). The ratio samplers take OTEL_TRACES_SAMPLER_ARG, a probability in [0, 1] (default 1).
var Samplers = []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"}

// CheckSampler validates OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. The SDK reads them
// itself, but on a value it does not understand it reports an error to the global handler and
// samples every trace: a typo in a production ratio would export everything. So Setup refuses
// to start instead.
func CheckSampler() error {
	name := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	if name == "" {
		return nil
	}
	if !slices.Contains(Samplers, name) {
		return fmt.Errorf("OTEL_TRACES_SAMPLER=%q: not one of %s", name, strings.Join(Samplers, ", "))
	}
	if arg != "" && strings.HasSuffix(name, "traceidratio") {
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 || math.IsNaN(v) {
			return fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a probability from 0 to 1 for %s", arg, name)
		}
	}
	return nil
}

// Setup installs global providers for service and returns them.
func Setup(ctx context.Context, service, version string) (*Providers, error) {
	if err := CheckSampler(); err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(service), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if OTLPConfigured("TRACES") {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	} else if os.Getenv("OTEL_TRACES_SAMPLER") == "" {
		// Nothing exports spans: create them unsampled. They still get valid trace and span ids,
		// so trace context flows through Kafka headers and logs, without the cost of recording
		// attributes and events nobody reads. OTEL_TRACES_SAMPLER overrides this.
		topts = append(topts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(topts...)

	reg := prometheus.NewRegistry()
	// go_gc_heap_live_bytes (the heap the last GC found live) besides the classic memstats: what
	// an instance's state really takes, without the garbage heap_inuse also counts.
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: liveHeap})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if OTLPConfigured("METRICS") {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(15*time.Second))))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Providers{
		Tracer:         tp,
		Meter:          mp,
		MetricsHandler: metricsHandler(reg),
	}, nil
}

// Shutdown flushes pending spans and metrics.
func (p *Providers) Shutdown(ctx context.Context) error {
	return errors.Join(p.Tracer.Shutdown(ctx), p.Meter.Shutdown(ctx))
}

// liveHeap selects runtime/metrics' /gc/heap/live:bytes for the Go collector.
var liveHeap = regexp.MustCompile(`^/gc/heap/live:bytes$`)
