package jaeger_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/jaeger"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// The tools module pins the same Jaeger as the code that builds and runs it.
func TestToolsModuleVersion(t *testing.T) {
	root, err := jaeger.FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jaeger.ToolsModuleVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	if v != jaeger.Version {
		t.Fatalf("%s/go.mod requires Jaeger %s, package jaeger pins %s", jaeger.ModuleDir, v, jaeger.Version)
	}
}

// A real Jaeger takes OTLP/HTTP and gives the spans back through the query API v3, with kinds,
// parents, links, attributes and events, and the services list.
func TestJaegerRoundTrip(t *testing.T) {
	p := stacktest.Jaeger(t)
	const traceID, other = "5b8efff798038103d269b633813fc60c", "0af7651916cd43dd8448eb211c80319c"
	sent := time.Now()
	ns := func(d time.Duration) string { return fmt.Sprint(sent.Add(d).UnixNano()) }
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"roundtrip"}}]},
	 "scopeSpans":[{"scope":{"name":"test"},"spans":[
	  {"traceId":"` + traceID + `","spanId":"eee19b7ec3c1b174","name":"root","kind":2,
	   "startTimeUnixNano":"` + ns(0) + `","endTimeUnixNano":"` + ns(3*time.Millisecond) + `",
	   "attributes":[{"key":"n","value":{"intValue":"7"}},{"key":"s","value":{"stringValue":"x"}}]},
	  {"traceId":"` + traceID + `","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"send t","kind":4,
	   "startTimeUnixNano":"` + ns(time.Millisecond) + `","endTimeUnixNano":"` + ns(2*time.Millisecond) + `",
	   "links":[{"traceId":"` + other + `","spanId":"b7ad6b7169203331"}],
	   "events":[{"name":"answer","timeUnixNano":"` + ns(time.Millisecond) + `","attributes":[{"key":"status","value":{"intValue":"200"}}]}],
	   "status":{"code":2,"message":"boom"}}]}]}]}`
	resp, err := http.Post(p.TracesEndpoint(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OTLP export: %s", resp.Status)
	}
	cl := p.Client()
	ctx := context.Background()
	var spans []jaeger.Span
	for deadline := time.Now().Add(10 * time.Second); ; {
		spans, err = cl.Trace(ctx, traceID)
		if err == nil && len(spans) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace: %d spans, %v", len(spans), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	byName := map[string]jaeger.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	root, child := byName["root"], byName["send t"]
	if root.Kind != "SERVER" || root.Service != "roundtrip" || root.Attributes["n"] != "7" || root.Attributes["s"] != "x" || root.TraceID != traceID {
		t.Errorf("root span %+v", root)
	}
	if child.Kind != "PRODUCER" || child.ParentSpanID != root.SpanID || len(child.Links) != 1 || child.Links[0].TraceID != other ||
		child.Links[0].SpanID != "b7ad6b7169203331" || len(child.Events) != 1 || child.Events[0].Attributes["status"] != "200" || child.StatusMsg != "boom" {
		t.Errorf("child span %+v", child)
	}
	if d := root.End.Sub(root.Start); d != 3*time.Millisecond {
		t.Errorf("root duration %s", d)
	}
	found, err := cl.FindTraces(ctx, "roundtrip", sent.Add(-time.Minute), time.Now().Add(time.Minute), 10)
	if err != nil || len(found[traceID]) != 2 {
		t.Errorf("FindTraces: %v, %v", found, err)
	}
	if _, err := cl.Trace(ctx, "00000000000000000000000000000001"); err != jaeger.ErrNotFound {
		t.Errorf("unknown trace: %v, want ErrNotFound", err)
	}
	svcs, err := cl.Services(ctx)
	if err != nil || strings.Join(svcs, ",") != "roundtrip" {
		t.Errorf("services %v, %v (Jaeger's own tracing must be off)", svcs, err)
	}
}
