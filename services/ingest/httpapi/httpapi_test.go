package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/core"
	"github.com/wakepush/wakepush/services/ingest/devices"
	"github.com/wakepush/wakepush/services/ingest/httpapi"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

const eventToken = "tenant-one-token-0001"

var spans = tracetest.NewInMemoryExporter()

func TestMain(m *testing.M) {
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

func newAPI(t *testing.T, p core.Producer, produceTimeout time.Duration) *httptest.Server {
	t.Helper()
	tenants, err := httpapi.ParseTenants("acme:" + eventToken + ", other:other-tenant-token-02")
	if err != nil {
		t.Fatal(err)
	}
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: p, Devices: devices.New(),
		ComponentJID: "push.example.org", ProduceTimeout: produceTimeout})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(in, httpapi.Options{Tenants: tenants}))
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func call(t *testing.T, srv *httptest.Server, method, path, body string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func jsonBody(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func register(t *testing.T, srv *httptest.Server, app, token string) (node, secret, deviceID string) {
	t.Helper()
	a := call(t, srv, "POST", "/v1/registrations", jsonBody(map[string]string{"app": app, "token": token, "environment": "production"}))
	if a.status != 200 {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	return a.body["node"].(string), a.body["secret"].(string), a.body["device_id"].(string)
}

// TestWithKafka runs the API against a real broker: every 2xx answer comes after the record is
// in Kafka.
func TestWithKafka(t *testing.T) {
	cfg, broker := testenv.KafkaBroker(t)
	prod, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	srv := newAPI(t, prod, 2*time.Second)

	a := call(t, srv, "POST", "/v1/registrations", jsonBody(map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken, "environment": "sandbox"}))
	if a.status != 200 || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("register: %d %s", a.status, a.raw)
	}
	node, secret, deviceID := a.body["node"].(string), a.body["secret"].(string), a.body["device_id"].(string)
	if a.body["jid"] != "push.example.org" || len(deviceID) != 32 || !strings.Contains(node, deviceID) || strings.Contains(a.raw, testenv.APNsToken) && strings.Contains(node, testenv.APNsToken) {
		t.Fatalf("register answer %s", a.raw)
	}
	regID, _ := a.body["registration_id"].(string)
	regs := testenv.ReadAll(t, cfg, topics.Registrations)
	if len(regs) != 1 || len(regID) != 32 || !strings.Contains(node, regID) || string(regs[0].Key) != deviceID+"/"+regID ||
		testenv.Headers(regs[0])[records.HeaderSchema] != "wakepush.v1.Registration" {
		t.Fatalf("registrations topic after register: %v", regs)
	}
	// Renewing with the registration's own node and secret returns it again; registering the
	// token without them makes another registration of the same device (someone else may know
	// the token: it must not get this node and secret).
	a = call(t, srv, "POST", "/v1/registrations", jsonBody(map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken, "environment": "sandbox", "node": node, "secret": secret}))
	if a.status != 200 || a.body["node"] != node || a.body["secret"] != secret {
		t.Fatalf("renewal: %d %s", a.status, a.raw)
	}
	n2, s2, d2 := register(t, srv, testenv.IOSApp, strings.ToUpper(testenv.APNsToken))
	if d2 != deviceID || n2 == node || s2 == secret {
		t.Fatalf("registering the token again gave %s (device %s), first %s", n2, d2, node)
	}
	// That other registration cannot unregister this one, nor renew it.
	a = call(t, srv, "POST", "/v1/registrations/unregister", jsonBody(map[string]string{"node": node, "secret": s2}))
	if a.status != 403 {
		t.Fatalf("unregister with another registration's secret: %d %s", a.status, a.raw)
	}
	a = call(t, srv, "POST", "/v1/registrations", jsonBody(map[string]string{"app": testenv.IOSApp, "token": testenv.APNsToken, "node": node, "secret": s2}))
	if a.status != 403 || strings.Contains(a.raw, secret) {
		t.Fatalf("renewal with another registration's secret: %d %s", a.status, a.raw)
	}
	a = call(t, srv, "POST", "/v1/registrations/unregister", jsonBody(map[string]string{"node": n2, "secret": s2}))
	if a.status != 200 {
		t.Fatalf("unregister of the other registration: %d %s", a.status, a.raw)
	}

	// Event: 202 only once acknowledged, so the record is readable right after the answer. The
	// caller's trace continues into the record.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	a = call(t, srv, "POST", "/v1/events", jsonBody(map[string]any{"node": node, "secret": secret, "urgent": true, "important": true, "message_count": 3}),
		"Authorization", "Bearer "+eventToken, "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if a.status != 202 {
		t.Fatalf("event: %d %s", a.status, a.raw)
	}
	eventID := a.body["event_id"].(string)
	evs := testenv.ReadAll(t, cfg, topics.Events)
	if len(evs) != 1 || string(evs[0].Key) != deviceID {
		t.Fatalf("events topic right after 202: %d records", len(evs))
	}
	h := testenv.Headers(evs[0])
	if !strings.HasPrefix(h[records.HeaderTraceParent], "00-"+traceID+"-") || h[records.HeaderContentType] != records.ContentType {
		t.Fatalf("event headers %v", h)
	}
	// The producer span is a child of the request's SERVER span.
	var server, producer sdktrace.ReadOnlySpan
	for _, s := range spans.GetSpans().Snapshots() {
		if s.SpanContext().TraceID().String() != traceID {
			continue
		}
		switch {
		case s.Name() == "POST /v1/events" && s.SpanKind() == trace.SpanKindServer:
			server = s
		case s.Name() == "send "+topics.Events && s.SpanKind() == trace.SpanKindProducer:
			producer = s
		}
	}
	if server == nil || producer == nil || producer.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Fatalf("spans: server %v, producer %v", server, producer)
	}
	ev, err := records.Decode(h[records.HeaderSchema], evs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	pe := ev.(*wakepushv1.PushEvent)
	if pe.Id != eventID || pe.Sender != "acme" || pe.Source != wakepushv1.EventSource_EVENT_SOURCE_HTTP || !pe.Urgent || !pe.Important || pe.MessageCount != 3 {
		t.Fatalf("event record %v", pe)
	}

	// Receipt.
	a = call(t, srv, "POST", "/v1/receipts", jsonBody(map[string]string{"node": node, "secret": secret, "wake_id": "0190f0c2-0000-7000-8000-000000000001", "received_at": "2025-06-01T10:00:00.5Z"}))
	if a.status != 202 {
		t.Fatalf("receipt: %d %s", a.status, a.raw)
	}
	rcs := testenv.ReadAll(t, cfg, topics.Receipts)
	if len(rcs) != 1 {
		t.Fatalf("receipts: %d", len(rcs))
	}

	// Unregister, then events are 410.
	a = call(t, srv, "POST", "/v1/registrations/unregister", jsonBody(map[string]string{"node": node, "secret": secret}))
	if a.status != 200 {
		t.Fatalf("unregister: %d %s", a.status, a.raw)
	}
	a = call(t, srv, "POST", "/v1/events", jsonBody(map[string]any{"node": node, "secret": secret}), "Authorization", "Bearer "+eventToken)
	if a.status != 410 || a.body["type"] != "urn:wakepush:problem:device-unregistered" {
		t.Fatalf("event after unregister: %d %s", a.status, a.raw)
	}
	regs = testenv.ReadAll(t, cfg, topics.Registrations)
	if len(regs) != 5 {
		t.Fatalf("registrations: %d records, want 5", len(regs))
	}

	// Kafka down: 503 with Retry-After, within the produce timeout.
	n3, s3, _ := register(t, srv, testenv.AndroidApp, "fcm-token:APA91bHPRgkF3JUikC4ENAH")
	broker.Close()
	start := time.Now()
	a = call(t, srv, "POST", "/v1/events", jsonBody(map[string]any{"node": n3, "secret": s3}), "Authorization", "Bearer "+eventToken)
	if a.status != 503 || a.header.Get("Retry-After") == "" || a.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("event with Kafka down: %d %v %s", a.status, a.header, a.raw)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("503 took %s", d)
	}
}

// TestAnswerWaitsForAck: the event answer is held until the producer returns.
func TestAnswerWaitsForAck(t *testing.T) {
	p := &testenv.Producer{}
	srv := newAPI(t, p, 10*time.Second)
	node, secret, _ := register(t, srv, testenv.IOSApp, testenv.APNsToken)
	gate := make(chan struct{})
	p.SetGate(gate)
	done := make(chan answer, 1)
	go func() {
		done <- call(t, srv, "POST", "/v1/events", jsonBody(map[string]any{"node": node, "secret": secret}), "Authorization", "Bearer "+eventToken)
	}()
	select {
	case a := <-done:
		t.Fatalf("answered %d before Kafka acknowledged", a.status)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	if a := <-done; a.status != 202 {
		t.Fatalf("after ack: %d %s", a.status, a.raw)
	}
}

func TestProblems(t *testing.T) {
	p := &testenv.Producer{}
	srv := newAPI(t, p, time.Second)
	node, secret, _ := register(t, srv, testenv.IOSApp, testenv.APNsToken)
	auth := []string{"Authorization", "Bearer " + eventToken}
	ev := func(extra string) string { return `{"node":"` + node + `","secret":"` + secret + `"` + extra + `}` }
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		typ                      string
	}{
		{"empty body", "POST", "/v1/registrations", "", nil, 400, "bad-request"},
		{"bad JSON", "POST", "/v1/registrations", `{"app":`, nil, 400, "bad-request"},
		{"not an object", "POST", "/v1/registrations", `[1,2]`, nil, 400, "bad-request"},
		{"unknown field", "POST", "/v1/registrations", `{"app":"im.test.ios","token":"` + testenv.APNsToken + `","tokn":"x"}`, nil, 400, "bad-request"},
		{"trailing data", "POST", "/v1/registrations", `{"app":"im.test.ios","token":"` + testenv.APNsToken + `"} {}`, nil, 400, "bad-request"},
		{"too large", "POST", "/v1/registrations", `{"app":"` + strings.Repeat("a", 17<<10) + `"}`, nil, 413, "too-large"},
		{"not JSON", "POST", "/v1/registrations", `app=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"},
		{"missing token", "POST", "/v1/registrations", `{"app":"im.test.ios"}`, nil, 400, "bad-request"},
		{"unknown app", "POST", "/v1/registrations", `{"app":"com.nope","token":"` + testenv.APNsToken + `"}`, nil, 404, "unknown-app"},
		{"bad token", "POST", "/v1/registrations", `{"app":"im.test.ios","token":"not hex"}`, nil, 400, "bad-request"},
		{"bad environment", "POST", "/v1/registrations", `{"app":"im.test.ios","token":"` + testenv.APNsToken + `","environment":"dev"}`, nil, 400, "bad-request"},
		{"wrong secret", "POST", "/v1/registrations/unregister", `{"node":"` + node + `","secret":"wrong"}`, nil, 403, "not-authorized"},
		{"unknown node", "POST", "/v1/registrations/unregister", `{"node":"` + testenv.APNsToken + `","secret":"x"}`, nil, 404, "unknown-node"},
		{"event without bearer", "POST", "/v1/events", ev(""), nil, 401, "unauthorized"},
		{"event wrong bearer", "POST", "/v1/events", ev(""), []string{"Authorization", "Bearer " + eventToken + "x"}, 401, "unauthorized"},
		{"event basic auth", "POST", "/v1/events", ev(""), []string{"Authorization", "Basic " + eventToken}, 401, "unauthorized"},
		{"event negative count", "POST", "/v1/events", ev(`,"message_count":-1`), auth, 400, "bad-request"},
		{"event wrong secret", "POST", "/v1/events", `{"node":"` + node + `","secret":"` + strings.ToUpper(secret) + `x"}`, auth, 403, "not-authorized"},
		{"receipt bad time", "POST", "/v1/receipts", ev(`,"wake_id":"w","received_at":"yesterday"`), nil, 400, "bad-request"},
		{"receipt no wake id", "POST", "/v1/receipts", ev(``), nil, 400, "bad-request"},
		{"GET registrations", "GET", "/v1/registrations", "", nil, 405, "method-not-allowed"},
		{"unknown path", "POST", "/v2/events", "{}", nil, 404, "not-found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, srv, tt.method, tt.path, tt.body, tt.hdr...)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.raw)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if a.body["type"] != "urn:wakepush:problem:"+tt.typ || a.body["status"] != float64(tt.status) || a.body["title"] == "" {
				t.Fatalf("problem %s", a.raw)
			}
			if strings.Contains(a.raw, secret) {
				t.Fatalf("problem leaks the secret: %s", a.raw)
			}
			switch tt.status {
			case 401:
				if a.header.Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
			case 405:
				if a.header.Get("Allow") != "POST" {
					t.Fatal("405 without Allow: POST")
				}
			}
		})
	}
	// Only the registration was produced.
	if n := len(p.Records()); n != 1 {
		t.Fatalf("%d records produced", n)
	}
	// A valid event still works with the same server.
	if a := call(t, srv, "POST", "/v1/events", ev(`,"message_count":2`), auth...); a.status != 202 {
		t.Fatalf("event: %d %s", a.status, a.raw)
	}
}

func TestParseTenants(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int
		wantErr string
	}{
		{"", 0, ""},
		{"a:0123456789ab, b.c-d:0123456789abcd", 2, ""},
		{"a:short", 0, "at least 12"},
		{"nocolon", 0, "not tenant:token"},
		{"a:0123456789ab,a:0123456789abc", 0, "twice"},
		{"a b:0123456789ab", 0, "letters"},
	} {
		ts, err := httpapi.ParseTenants(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTenants(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || ts.Len() != tc.n {
			t.Errorf("ParseTenants(%q) = %d, %v", tc.in, ts.Len(), err)
		}
	}
	ts, _ := httpapi.ParseTenants("a:0123456789ab,b:ba9876543210")
	if name, ok := ts.Authenticate("bearer ba9876543210"); !ok || name != "b" {
		t.Fatalf("Authenticate = %q, %v", name, ok)
	}
}

// Registration calls over the per-client rate get 429 with Retry-After and write nothing; the
// event API is limited per tenant, so one tenant over its rate does not stop another.
func TestRateLimits(t *testing.T) {
	tenants, err := httpapi.ParseTenants("acme:" + eventToken + ", other:other-tenant-token-02")
	if err != nil {
		t.Fatal(err)
	}
	p := &testenv.Producer{}
	in, err := core.New(core.Config{Apps: testenv.Apps(t), Keys: testenv.Keys(t), Producer: p, Devices: devices.New(),
		ComponentJID: "push.example.org", ProduceTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(in, httpapi.Options{Tenants: tenants,
		ClientRate: core.Rate{PerSecond: 0.001, Burst: 2}, TenantRate: core.Rate{PerSecond: 0.001, Burst: 1}}))
	t.Cleanup(srv.Close)

	post := func(path, bearer string, body any) *http.Response {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	reg := map[string]any{"app": testenv.IOSApp, "token": testenv.APNsToken, "environment": "production"}
	for i, want := range []int{200, 200, 429} {
		resp := post("/v1/registrations", "", reg)
		if resp.StatusCode != want {
			t.Fatalf("registration %d: %d, want %d", i+1, resp.StatusCode, want)
		}
		if want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if n := len(p.Records()); n != 2 {
		t.Errorf("%d registration records written, want 2 (the limited call writes nothing)", n)
	}
	r := testenv.Keys(t).Register(testenv.IOSApp, "apns", testenv.APNsToken)
	ev := map[string]any{"node": r.Node, "secret": r.Secret}
	if code := post("/v1/events", eventToken, ev).StatusCode; code != 202 {
		t.Fatalf("first event of acme: %d", code)
	}
	if code := post("/v1/events", eventToken, ev).StatusCode; code != 429 {
		t.Fatalf("second event of acme: %d, want 429", code)
	}
	if code := post("/v1/events", "other-tenant-token-02", ev).StatusCode; code != 202 {
		t.Fatalf("first event of another tenant: %d, want 202", code)
	}
}
