package provider

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wakepush/wakepush/services/internal/redact"
)

// TraceTransport wraps a provider's HTTP transport with a CLIENT span per request (a child of
// the request context's span: the wake's "process push.wakes"), named by name(req), with attrs,
// the method, server address and port, and the response status (error status from 400 on, or
// the transport error). It injects no trace headers: trace context stays inside wakepush.
//
// It replaces otelhttp.NewTransport, which cost about a quarter of the sender's CPU per push in
// BenchmarkSend (semconv attribute sets and metric recording per request; README.md,
// "Performance"); provider latency is the engine's histogram.
func TraceTransport(next http.RoundTripper, name func(*http.Request) string, attrs ...attribute.KeyValue) http.RoundTripper {
	return &traceTransport{next: next, name: name, attrs: attrs, tracer: otel.Tracer("github.com/wakepush/wakepush/services/sender/provider")}
}

// clientSpan is the start option of every request span, made once.
var clientSpan = trace.WithSpanKind(trace.SpanKindClient)

type traceTransport struct {
	next   http.RoundTripper
	name   func(*http.Request) string
	attrs  []attribute.KeyValue
	tracer trace.Tracer
}

func (t *traceTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, span := t.tracer.Start(r.Context(), t.name(r), clientSpan)
	defer span.End()
	if !span.IsRecording() {
		// An unsampled request: nothing to record, and no span below this one to parent (the
		// copy of the request WithContext makes, and the attributes, cost ~1 % of the sender's
		// CPU per push).
		return t.next.RoundTrip(r)
	}
	port := r.URL.Port()
	if port == "" {
		port = "443"
	}
	p, _ := strconv.Atoi(port)
	span.SetAttributes(t.attrs...)
	span.SetAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("server.address", r.URL.Hostname()),
		attribute.Int("server.port", p),
	)
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	switch {
	case err != nil:
		// A transport error may quote the request URL, which ends in the APNs device token:
		// only its redacted text goes on the span.
		rerr := redact.Error(err)
		span.RecordError(rerr)
		span.SetStatus(codes.Error, rerr.Error())
	default:
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 400 {
			span.SetStatus(codes.Error, strconv.Itoa(resp.StatusCode))
			span.SetAttributes(attribute.String("error.type", strconv.Itoa(resp.StatusCode)))
		}
	}
	return resp, err
}
