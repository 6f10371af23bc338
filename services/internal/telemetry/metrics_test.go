package telemetry

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/metric"

	"github.com/wakepush/wakepush/services/internal/admin"
)

// exemplarHistogram is the exposition name of the histogram the exemplar tests record into.
const exemplarHistogram = "wakepush_test_op_duration_seconds"

// A latency measurement recorded inside a sampled span carries that span's trace and span id as
// an exemplar on the admin server's /metrics in OpenMetrics; unsampled spans, and the exemplar
// filter switched off with the standard variable, give none.
func TestMetricsExemplars(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    bool
		sampled bool
	}{
		{"sampled span", map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, true, true},
		{"unsampled span", map[string]string{"OTEL_TRACES_SAMPLER": "always_off"}, false, false},
		{"filter always_off", map[string]string{"OTEL_TRACES_SAMPLER": "always_on", "OTEL_METRICS_EXEMPLAR_FILTER": "always_off"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
			t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
			t.Setenv("OTEL_METRICS_EXEMPLAR_FILTER", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p, err := Setup(context.Background(), "test", "dev")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 0)
				cancel()
				p.Shutdown(ctx)
			})
			hist, err := p.Meter.Meter("t").Float64Histogram("wakepush.test.op.duration", metric.WithUnit("s"),
				metric.WithExplicitBucketBoundaries(0.01, 0.1, 1))
			if err != nil {
				t.Fatal(err)
			}
			ctx, span := p.Tracer.Tracer("t").Start(context.Background(), "op")
			if span.SpanContext().IsSampled() != tt.sampled {
				t.Fatalf("span sampled = %v, want %v", span.SpanContext().IsSampled(), tt.sampled)
			}
			hist.Record(ctx, 0.042)
			span.End()

			srv, err := admin.New("127.0.0.1:0", p.MetricsHandler)
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(slog.New(slog.DiscardHandler))
			t.Cleanup(func() { srv.Shutdown(context.Background()) })
			url := "http://" + srv.Addr() + "/metrics"

			om := scrapeOpenMetrics(t, url)
			// The measurement itself is exposed in every case (the 0.1 bucket counts it).
			bucket := om.series(exemplarHistogram+"_bucket", `le="0.1"`)
			if got, ok := om.samples[bucket]; !ok || got != 1 {
				t.Fatalf("bucket le=0.1 = %v, want 1; exposition:\n%s", got, om.text)
			}
			ex := om.exemplars[exemplarHistogram+"_bucket"]
			pb := scrapeProtobufExemplars(t, url)
			if !tt.want {
				if len(ex) != 0 || len(pb) != 0 {
					t.Fatalf("exemplars present, want none: openmetrics %v, protobuf %v", ex, pb)
				}
				return
			}
			wantTrace, wantSpan := span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()
			if len(ex) != 1 {
				t.Fatalf("%d exemplars on %s_bucket, want 1; exposition:\n%s", len(ex), exemplarHistogram, om.text)
			}
			e := ex[0]
			if e.labels["trace_id"] != wantTrace || e.labels["span_id"] != wantSpan {
				t.Errorf("exemplar labels %v, want trace_id=%s span_id=%s", e.labels, wantTrace, wantSpan)
			}
			if e.value != 0.042 || e.series != bucket {
				t.Errorf("exemplar %v on %s, want value 0.042 on the le=0.1 bucket", e.value, e.series)
			}
			if e.timestamp <= 0 || time.Since(time.Unix(0, int64(e.timestamp*1e9))) > time.Minute {
				t.Errorf("exemplar timestamp %v is not the recording time", e.timestamp)
			}
			// The same exemplar through the Prometheus library's own decoder (protobuf exposition).
			if len(pb) != 1 || labelValue(pb[0], "trace_id") != wantTrace || pb[0].GetValue() != 0.042 {
				t.Errorf("protobuf exemplars %v, want one with trace_id %s and value 0.042", pb, wantTrace)
			}
		})
	}
}

// Without the OpenMetrics Accept header a scraper gets the classic text format, which the
// Prometheus parser reads (it has no exemplar syntax).
func TestMetricsClassicText(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	p, err := Setup(context.Background(), "test", "dev")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	hist, _ := p.Meter.Meter("t").Float64Histogram("wakepush.test.op.duration", metric.WithUnit("s"))
	ctx, span := p.Tracer.Tracer("t").Start(context.Background(), "op")
	hist.Record(ctx, 0.5)
	span.End()
	srv, err := admin.New("127.0.0.1:0", p.MetricsHandler)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(slog.New(slog.DiscardHandler))
	defer srv.Shutdown(context.Background())
	runtime.GC() // go_gc_heap_live_bytes is 0 until a GC has run
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want text/plain", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("classic text does not parse: %v", err)
	}
	if _, ok := fams[exemplarHistogram]; !ok {
		t.Fatalf("no %s family in %d families", exemplarHistogram, len(fams))
	}
	// The live heap after the last GC (what an instance's state takes), next to the memstats.
	for _, name := range []string{"go_gc_heap_live_bytes", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes"} {
		if f, ok := fams[name]; !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge().GetValue() <= 0 {
			t.Errorf("%s: %v, want one positive gauge", name, f)
		}
	}
}

type openMetricsExemplar struct {
	series    string // the sample line it annotates, without the value
	labels    map[string]string
	value     float64
	timestamp float64
}

type openMetricsScrape struct {
	text      string
	samples   map[string]float64               // series → value
	exemplars map[string][]openMetricsExemplar // metric name → exemplars
}

// scrapeOpenMetrics fetches url as OpenMetrics 1.0 and parses it: every sample, and the exemplar
// after " # " on a sample line (OpenMetrics 1.0 §exemplars: `# {labels} value [timestamp]`). It
// fails the test on a response that is not OpenMetrics, lacks the final "# EOF", or has a line
// it cannot parse.
func scrapeOpenMetrics(t *testing.T, url string) openMetricsScrape {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "application/openmetrics-text" || params["version"] != "1.0.0" {
		t.Fatalf("Content-Type %q, want application/openmetrics-text version 1.0.0", resp.Header.Get("Content-Type"))
	}
	s := openMetricsScrape{text: string(body), samples: map[string]float64{}, exemplars: map[string][]openMetricsExemplar{}}
	if !strings.HasSuffix(s.text, "# EOF\n") {
		t.Fatalf("OpenMetrics exposition does not end with # EOF:\n%s", s.text)
	}
	sc := bufio.NewScanner(strings.NewReader(s.text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		sample, exemplar, hasExemplar := strings.Cut(line, " # ")
		series, value, err := splitSample(sample)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		s.samples[series] = value
		if !hasExemplar {
			continue
		}
		e, err := parseExemplar(exemplar)
		if err != nil {
			t.Fatalf("exemplar in line %q: %v", line, err)
		}
		e.series = series
		name, _, _ := strings.Cut(series, "{")
		s.exemplars[name] = append(s.exemplars[name], e)
	}
	return s
}

// series returns the one series of metric name whose label set contains label (`k="v"`), or "".
func (s openMetricsScrape) series(name, label string) string {
	found := ""
	for k := range s.samples {
		if strings.HasPrefix(k, name+"{") && (strings.Contains(k, "{"+label) || strings.Contains(k, ","+label)) {
			if found != "" {
				return ""
			}
			found = k
		}
	}
	return found
}

// splitSample splits `name{labels} value [timestamp]` into the series and its value.
func splitSample(s string) (string, float64, error) {
	end := strings.LastIndexByte(s, '}') + 1
	if end == 0 {
		end = strings.IndexByte(s, ' ')
	}
	if end <= 0 || end >= len(s) || s[end] != ' ' {
		return "", 0, fmt.Errorf("no value")
	}
	fields := strings.Fields(s[end:])
	if len(fields) == 0 || len(fields) > 2 {
		return "", 0, fmt.Errorf("want a value and an optional timestamp, got %q", s[end:])
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	return s[:end], v, err
}

// parseExemplar parses `{k="v",...} value [timestamp]`.
func parseExemplar(s string) (openMetricsExemplar, error) {
	e := openMetricsExemplar{labels: map[string]string{}}
	if !strings.HasPrefix(s, "{") {
		return e, fmt.Errorf("no label set")
	}
	i := 1
	for i < len(s) && s[i] != '}' {
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return e, fmt.Errorf("bad label at %q", s[i:])
		}
		key := s[i : i+eq]
		j := i + eq + 2
		var val strings.Builder
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return e, fmt.Errorf("unterminated label value")
		}
		e.labels[key] = val.String()
		i = j + 1
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
	if i >= len(s) {
		return e, fmt.Errorf("unterminated label set")
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) == 0 || len(fields) > 2 {
		return e, fmt.Errorf("want a value and an optional timestamp, got %q", s[i+1:])
	}
	var err error
	if e.value, err = strconv.ParseFloat(fields[0], 64); err != nil {
		return e, err
	}
	if len(fields) == 2 {
		if e.timestamp, err = strconv.ParseFloat(fields[1], 64); err != nil {
			return e, err
		}
	}
	return e, nil
}

// scrapeProtobufExemplars fetches url in the Prometheus protobuf exposition, decodes it with
// expfmt and returns the bucket exemplars of the test histogram.
func scrapeProtobufExemplars(t *testing.T, url string) []*dto.Exemplar {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var out []*dto.Exemplar
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("decode protobuf exposition: %v", err)
		}
		if mf.GetName() != exemplarHistogram {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, b := range m.GetHistogram().GetBucket() {
				if e := b.GetExemplar(); e != nil {
					out = append(out, e)
				}
			}
			out = append(out, m.GetHistogram().GetExemplars()...)
		}
	}
}

func labelValue(e *dto.Exemplar, name string) string {
	for _, l := range e.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
