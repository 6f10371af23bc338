package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// An API v3 answer shaped like Jaeger v1.75.0's (OTLP JSON: hex ids, numeric kinds, string
// nanoseconds): two traces, the demo's event in the second.
const v3Answer = `{"result":{"resourceSpans":[
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"ingest"}}]},"scopeSpans":[{"spans":[
  {"traceId":"aaaa0000000000000000000000000001","spanId":"a000000000000001","name":"POST /v1/events","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000","attributes":[{"key":"wakepush.event_id","value":{"stringValue":"other"}}]},
  {"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000001","name":"POST /v1/events","kind":2,"startTimeUnixNano":"1000000","endTimeUnixNano":"4000000","attributes":[{"key":"wakepush.event_id","value":{"stringValue":"ev-1"}}]},
  {"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000002","parentSpanId":"b000000000000001","name":"send push.events","kind":4,"startTimeUnixNano":"1100000","endTimeUnixNano":"3000000"}]}]},
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"coalescer"}}]},"scopeSpans":[{"spans":[
  {"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000003","parentSpanId":"b000000000000002","name":"process push.events","kind":5,"startTimeUnixNano":"3500000","endTimeUnixNano":"5000000","links":[{"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000002"}]}]}]},
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"sender"}}]},"scopeSpans":[{"spans":[
  {"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000004","parentSpanId":"b000000000000003","name":"process push.wakes","kind":"SPAN_KIND_CONSUMER","startTimeUnixNano":"6000000","endTimeUnixNano":"9000000"},
  {"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000005","parentSpanId":"b000000000000004","name":"apns push","kind":3,"startTimeUnixNano":"6500000","endTimeUnixNano":"7000000"},
  {"traceId":"bbbb0000000000000000000000000002","spanId":"b000000000000006","parentSpanId":"b000000000000004","name":"send push.deliveries","kind":4,"startTimeUnixNano":"7500000","endTimeUnixNano":"8000000"}]}]}
]}}`

// The demo finds its event's trace among the others once it reaches the provider call and the
// delivery record, and prints it as a tree in start order.
func TestDemoTrace(t *testing.T) {
	var query string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		w.Write([]byte(v3Answer))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	spans, err := demoTrace(ctx, srv.URL, "ev-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 6 || !strings.Contains(query, "query.service_name=ingest") {
		t.Fatalf("%d spans (query %s), want the 6 of trace bbbb…", len(spans), query)
	}
	var out bytes.Buffer
	printTraceTree(&out, spans, "")
	want := []string{
		"ingest: POST /v1/events",
		"  ingest: send push.events",
		"    coalescer: process push.events",
		"      sender: process push.wakes",
		"        sender: apns push",
		"        sender: send push.deliveries",
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("tree:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w+" ") {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], "CONSUMER") || !strings.Contains(lines[2], "1 link(s)") || !strings.Contains(lines[4], "CLIENT") {
		t.Errorf("kinds or links missing:\n%s", out.String())
	}
}

// Without Jaeger the demo says so instead of waiting for its whole timeout.
func TestDemoTraceNoJaeger(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	began := time.Now()
	if _, err := demoTrace(ctx, url, "ev-1", time.Now()); !errors.Is(err, errNoJaeger) {
		t.Fatalf("err = %v, want errNoJaeger", err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("took %s", d)
	}
}
