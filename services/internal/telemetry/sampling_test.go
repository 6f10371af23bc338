package telemetry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// clearOTelEnv unsets every variable Setup and the SDK read, for the test.
func clearOTelEnv(t testing.TB) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, "")
	}
}

// A sampler the SDK does not understand makes it sample everything (it only reports the error
// to the global handler): Setup refuses such a configuration instead.
func TestCheckSampler(t *testing.T) {
	tests := []struct {
		sampler, arg string
		wantErr      string
	}{
		{"", "", ""},
		{"always_on", "", ""},
		{"parentbased_traceidratio", "0.01", ""},
		{"ParentBased_TraceIDRatio", " 1 ", ""},
		{"traceidratio", "", ""},
		{"always_off", "anything", ""}, // the argument is only read by the ratio samplers
		{"parentbased_ratio", "0.1", "OTEL_TRACES_SAMPLER"},
		{"jaeger_remote", "", "not one of"},
		{"parentbased_traceidratio", "1%", "OTEL_TRACES_SAMPLER_ARG"},
		{"traceidratio", "1.5", "from 0 to 1"},
		{"traceidratio", "-0.1", "from 0 to 1"},
		{"traceidratio", "NaN", "from 0 to 1"},
	}
	for _, tt := range tests {
		t.Run(tt.sampler+"="+tt.arg, func(t *testing.T) {
			clearOTelEnv(t)
			t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", tt.arg)
			err := CheckSampler()
			if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckSampler() = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.wantErr != "" {
				if p, err := Setup(context.Background(), "test", "dev"); err == nil {
					p.Shutdown(context.Background())
					t.Fatal("Setup accepted the invalid sampler")
				}
			}
		})
	}
}

// parentbased_traceidratio samples about ARG of the new traces and follows the caller's
// decision for the rest, so a sampled publish is followed through every service.
func TestParentBasedRatio(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1/v1/traces")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
	p, err := Setup(context.Background(), "test", "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		cancel()
		p.Shutdown(ctx)
	}()
	tr := p.Tracer.Tracer("t")
	const n = 4000
	sampled := 0
	for range n {
		_, s := tr.Start(context.Background(), "root")
		if s.SpanContext().IsSampled() {
			sampled++
		}
		s.End()
	}
	if sampled < n/4-200 || sampled > n/4+200 {
		t.Errorf("%d of %d roots sampled, want about a quarter", sampled, n)
	}
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: flags, Remote: true})
		_, s := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "child")
		if s.SpanContext().IsSampled() != parent.IsSampled() {
			t.Errorf("child of a parent with flags %v: sampled %v", flags, s.SpanContext().IsSampled())
		}
		s.End()
	}
}

// otlpSink accepts OTLP/HTTP trace exports and counts the spans and bytes it got.
type otlpSink struct {
	spans, bytes atomic.Int64
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.bytes.Add(int64(len(b)))
	s.spans.Add(int64(countSpans(b)))
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// countSpans counts ExportTraceServiceRequest.resource_spans(1).scope_spans(2).spans(2).
func countSpans(b []byte) int {
	n := 0
	walk(b, 1, func(rs []byte) {
		walk(rs, 2, func(ss []byte) {
			walk(ss, 2, func([]byte) { n++ })
		})
	})
	return n
}

// walk calls f with every length-delimited field num of message b.
func walk(b []byte, num protowire.Number, f func([]byte)) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return
		}
		b = b[l:]
		if typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return
			}
			if n == num {
				f(v)
			}
			b = b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return
		}
		b = b[l:]
	}
}

// BenchmarkTracingCost measures what tracing costs ingest per publish under each sampler: a
// SERVER span with the attributes the component handler sets, a PRODUCER span with the messaging
// attributes under it, and the traceparent injected into the Kafka headers, through Setup's real
// tracer provider and OTLP/HTTP batch exporter (to a local sink). It reports the wall time per
// publish including the final flush (ns/op), the CPU time of the whole process, exporter
// goroutines included (cpu-ns/op), and the spans and bytes exported per publish.
//
//	go test -run '^$' -bench BenchmarkTracingCost -benchtime 200000x ./services/internal/telemetry
func BenchmarkTracingCost(b *testing.B) {
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	cases := []struct {
		name, sampler, arg string
		export             bool
	}{
		{"no-exporter", "", "", false},
		{"always_off", "always_off", "", true},
		{"parentbased_traceidratio=0.01", "parentbased_traceidratio", "0.01", true},
		{"parentbased_traceidratio=0.1", "parentbased_traceidratio", "0.1", true},
		{"always_on", "always_on", "", true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			clearOTelEnv(b)
			if c.export {
				b.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/v1/traces")
			}
			b.Setenv("OTEL_TRACES_SAMPLER", c.sampler)
			b.Setenv("OTEL_TRACES_SAMPLER_ARG", c.arg)
			// The default queue (2048) drops spans when the loop outruns the exporter; a
			// service does not create spans this fast, so measure the export of all of them.
			b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
			p, err := Setup(context.Background(), "bench", "dev")
			if err != nil {
				b.Fatal(err)
			}
			tr := otel.Tracer("bench")
			prop := propagation.TraceContext{}
			sink.spans.Store(0)
			sink.bytes.Store(0)
			cpu0 := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ctx, srvSpan := tr.Start(context.Background(), "xep0357 publish", trace.WithSpanKind(trace.SpanKindServer),
					trace.WithAttributes(attribute.String("xmpp.from_domain", "example.org"), attribute.String("xmpp.to_domain", "push.example.org")))
				srvSpan.SetAttributes(attribute.Bool("wakepush.important", true), attribute.Bool("wakepush.urgent", false),
					attribute.String("wakepush.device_id", "0123456789abcdef0123456789abcdef"), attribute.String("wakepush.app", "im.example"),
					attribute.String("wakepush.event_id", "0193a5b8-7c1e-7d3f-9a2b-1c2d3e4f5a6b"))
				pctx, prod := tr.Start(ctx, "send push.events", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
					attribute.String("messaging.system", "kafka"), attribute.String("messaging.operation.type", "send"),
					attribute.String("messaging.operation.name", "send"), attribute.String("messaging.destination.name", "push.events"),
					attribute.String("messaging.kafka.message.key", "0123456789abcdef0123456789abcdef")))
				headers := propagation.MapCarrier{}
				prop.Inject(pctx, headers)
				if prod.IsRecording() {
					prod.SetAttributes(attribute.String("messaging.destination.partition.id", "3"), attribute.Int("messaging.kafka.offset", i))
				}
				prod.End()
				srvSpan.End()
			}
			if err := p.Shutdown(context.Background()); err != nil { // flushes what is queued
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(sink.spans.Load())/float64(b.N), "spans/op")
			b.ReportMetric(float64(sink.bytes.Load())/float64(b.N), "B-exported/op")
		})
	}
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(fmt.Sprint("getrusage: ", err))
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
