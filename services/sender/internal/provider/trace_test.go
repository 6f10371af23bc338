package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTraceTransport(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	var sawParent trace.SpanContext
	next := rtFunc(func(r *http.Request) (*http.Response, error) {
		sawParent = trace.SpanContextFromContext(r.Context())
		if r.Header.Get("traceparent") != "" {
			t.Error("trace headers sent to the provider")
		}
		if r.URL.Path == "/fail" {
			return nil, errors.New("boom")
		}
		if strings.HasPrefix(r.URL.Path, "/3/device/") {
			return nil, fmt.Errorf("Post %q: dial tcp: connection refused", r.URL.String())
		}
		return &http.Response{StatusCode: 410, Body: http.NoBody}, nil
	})
	rt := TraceTransport(next, func(r *http.Request) string { return "x " + r.URL.Path }, attribute.String("wakepush.app", "a"))
	ctx, parent := otel.Tracer("t").Start(context.Background(), "process")
	for _, path := range []string{"/ok", "/fail"} {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "https://api.example:2197"+path, nil)
		_, _ = rt.RoundTrip(req)
	}
	parent.End()
	var got []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			got = append(got, s)
		}
	}
	if len(got) != 2 || got[0].Name() != "x /ok" || got[1].Name() != "x /fail" {
		t.Fatalf("spans %v", got)
	}
	if got[0].Parent().SpanID() != parent.SpanContext().SpanID() || sawParent.SpanID() != got[1].SpanContext().SpanID() {
		t.Error("client span is not the parent's child, or not in the request context")
	}
	if got[0].Status().Code != codes.Error || got[1].Status().Code != codes.Error {
		t.Error("410 and transport errors must set an error status")
	}
	// A transport error quoting the URL (which ends in the device token) is redacted on the span.
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	_, _ = rt.RoundTrip(httptest.NewRequestWithContext(ctx, http.MethodPost, "https://api.example/3/device/"+token, nil))
	last := rec.Ended()[len(rec.Ended())-1]
	if last.Status().Code != codes.Error || strings.Contains(last.Status().Description, token) {
		t.Errorf("status %+v: want an error without the token", last.Status())
	}
	for _, ev := range last.Events() {
		for _, kv := range ev.Attributes {
			if strings.Contains(kv.Value.Emit(), token) {
				t.Errorf("span event %s attribute %s carries the device token", ev.Name, kv.Key)
			}
		}
	}
	if len(last.Events()) == 0 {
		t.Error("transport error not recorded as a span event")
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range got[0].Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if attrs["wakepush.app"].AsString() != "a" || attrs["http.response.status_code"].AsInt64() != 410 ||
		attrs["server.port"].AsInt64() != 2197 || attrs["server.address"].AsString() != "api.example" {
		t.Errorf("attributes %v", attrs)
	}
}

// An unsampled request goes down as it is: no span recorded, the caller's request itself.
func TestTraceTransportUnsampled(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	req := httptest.NewRequest(http.MethodPost, "https://api.example/ok", nil)
	var saw *http.Request
	rt := TraceTransport(rtFunc(func(r *http.Request) (*http.Response, error) {
		saw = r
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	}), func(r *http.Request) string { return "x" }, attribute.String("wakepush.app", "a"))
	if resp, err := rt.RoundTrip(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("RoundTrip = %v, %v", resp, err)
	}
	if saw != req || len(rec.Ended()) != 0 {
		t.Errorf("unsampled: request passed on %v (want the caller's), %d spans recorded", saw != req, len(rec.Ended()))
	}
}
