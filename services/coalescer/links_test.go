package main

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wakepush/wakepush/services/coalescer/coalesce"
)

// A wake links to every sampled event it covers, however many: beyond the SDK's per-span link
// limit the links go on "link events" children of the wake span; each event is linked once.
func TestProcessSpanLinksEveryEvent(t *testing.T) {
	for _, n := range []int{0, 1, linksPerSpan, linksPerSpan + 1, 300, coalesce.MaxLinks} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		c := &coalescer{tracer: tp.Tracer("test"), cfg: &settings{}}
		w := &coalesce.WakeDecision{ID: "w", DeviceID: "d", At: time.Now(), EventCount: n}
		for i := range n {
			w.Links = append(w.Links, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: trace.TraceID{byte(i >> 8), byte(i), 1}, SpanID: trace.SpanID{byte(i >> 8), byte(i), 2}, TraceFlags: trace.FlagsSampled}))
		}
		_, span := c.processSpan(w, 0)
		span.End()

		seen := map[trace.SpanID]int{}
		var wake sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == "process push.events" {
				wake = s
			}
		}
		if wake == nil {
			t.Fatalf("%d events: no wake span", n)
		}
		for _, s := range rec.Ended() {
			if s != wake && (s.Name() != "link events" || s.Parent().SpanID() != wake.SpanContext().SpanID()) {
				t.Errorf("%d events: unexpected span %q", n, s.Name())
			}
			if s.DroppedLinks() != 0 {
				t.Errorf("%d events: span %q dropped %d links", n, s.Name(), s.DroppedLinks())
			}
			for _, l := range s.Links() {
				seen[l.SpanContext.SpanID()]++
			}
		}
		if len(seen) != n {
			t.Errorf("%d events: %d distinct links", n, len(seen))
		}
		for id, k := range seen {
			if k != 1 {
				t.Errorf("%d events: event %s linked %d times", n, id, k)
			}
		}
		if n > 0 && wake.Parent().SpanID() != w.Links[0].SpanID() {
			t.Errorf("%d events: wake parent %s, want the first event %s", n, wake.Parent().SpanID(), w.Links[0].SpanID())
		}
	}
}
