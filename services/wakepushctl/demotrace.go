package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// traceSpan is a span of Jaeger's API v3 answer (OTLP JSON), as much as the demo shows.
type traceSpan struct {
	Service   string
	TraceID   string
	SpanID    string
	Parent    string
	Name      string
	Kind      string
	Start     int64
	End       int64
	Attrs     map[string]string
	LinkCount int
}

// errNoJaeger means the query API did not answer at all (the stack runs without traces).
var errNoJaeger = errors.New("no Jaeger")

// jaegerTraces reads GET base+path (an API v3 traces answer) into spans.
func jaegerTraces(ctx context.Context, base, path string) ([]traceSpan, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoJaeger, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	type kv struct {
		Key   string                     `json:"key"`
		Value map[string]json.RawMessage `json:"value"`
	}
	var a struct {
		Result struct {
			ResourceSpans []struct {
				Resource struct {
					Attributes []kv `json:"attributes"`
				} `json:"resource"`
				ScopeSpans []struct {
					Spans []struct {
						TraceID      string          `json:"traceId"`
						SpanID       string          `json:"spanId"`
						ParentSpanID string          `json:"parentSpanId"`
						Name         string          `json:"name"`
						Kind         json.RawMessage `json:"kind"`
						Start        json.RawMessage `json:"startTimeUnixNano"`
						End          json.RawMessage `json:"endTimeUnixNano"`
						Attributes   []kv            `json:"attributes"`
						Links        []struct{}      `json:"links"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("jaeger: decode answer: %w", err)
	}
	attrs := func(kvs []kv) map[string]string {
		m := map[string]string{}
		for _, a := range kvs {
			for _, v := range a.Value {
				var s string
				if json.Unmarshal(v, &s) != nil {
					s = string(v)
				}
				m[a.Key] = s
			}
		}
		return m
	}
	num := func(raw json.RawMessage) int64 {
		n, _ := strconv.ParseInt(strings.Trim(string(raw), `"`), 10, 64)
		return n
	}
	kinds := map[string]string{"1": "INTERNAL", "2": "SERVER", "3": "CLIENT", "4": "PRODUCER", "5": "CONSUMER"}
	var out []traceSpan
	for _, rs := range a.Result.ResourceSpans {
		service := attrs(rs.Resource.Attributes)["service.name"]
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				kind := strings.TrimPrefix(strings.Trim(string(s.Kind), `"`), "SPAN_KIND_")
				if k, ok := kinds[kind]; ok {
					kind = k
				}
				out = append(out, traceSpan{Service: service, TraceID: s.TraceID, SpanID: s.SpanID, Parent: s.ParentSpanID,
					Name: s.Name, Kind: kind, Start: num(s.Start), End: num(s.End), Attrs: attrs(s.Attributes), LinkCount: len(s.Links)})
			}
		}
	}
	return out, nil
}

// demoTrace finds the trace of the event published at start (ingest's span carries its
// wakepush.event_id) once it reaches the provider call and the delivery record, and returns its
// spans.
func demoTrace(ctx context.Context, base, eventID string, start time.Time) ([]traceSpan, error) {
	var found []traceSpan
	var unreachable error
	_, err := poll(ctx, func() (json.RawMessage, bool, error) {
		q := url.Values{}
		q.Set("query.service_name", "ingest")
		q.Set("query.start_time_min", start.Add(-time.Second).UTC().Format(time.RFC3339Nano))
		q.Set("query.start_time_max", time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano))
		q.Set("query.num_traces", "100")
		spans, err := jaegerTraces(ctx, base, "/api/v3/traces?"+q.Encode())
		if errors.Is(err, errNoJaeger) {
			unreachable = err
			return nil, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		traceID := ""
		for _, s := range spans {
			if s.Attrs["wakepush.event_id"] == eventID {
				traceID = s.TraceID
			}
		}
		if traceID == "" {
			return nil, false, nil
		}
		found = found[:0]
		provider, delivery := false, false
		for _, s := range spans {
			if s.TraceID != traceID {
				continue
			}
			found = append(found, s)
			provider = provider || (s.Kind == "CLIENT" && s.Service == "sender")
			delivery = delivery || s.Name == "send push.deliveries"
		}
		return nil, provider && delivery, nil
	})
	if unreachable != nil {
		return nil, unreachable
	}
	if err != nil && len(found) == 0 {
		return nil, fmt.Errorf("no trace for event %s in Jaeger (sampled out by OTEL_TRACES_SAMPLER?): %w", eventID, err)
	}
	return found, nil // possibly incomplete when the wait ran out
}

// printTraceTree prints spans as an indented tree, children in start order.
func printTraceTree(w io.Writer, spans []traceSpan, pfx string) {
	byID := map[string]bool{}
	children := map[string][]traceSpan{}
	for _, s := range spans {
		byID[s.SpanID] = true
	}
	var roots []traceSpan
	for _, s := range spans {
		if s.Parent == "" || !byID[s.Parent] {
			roots = append(roots, s)
			continue
		}
		children[s.Parent] = append(children[s.Parent], s)
	}
	byStart := func(l []traceSpan) {
		sort.Slice(l, func(i, j int) bool { return l[i].Start < l[j].Start })
	}
	byStart(roots)
	t0 := int64(0)
	if len(roots) > 0 {
		t0 = roots[0].Start
	}
	var walk func(s traceSpan, depth int)
	walk = func(s traceSpan, depth int) {
		name := strings.Repeat("  ", depth) + s.Service + ": " + s.Name
		extra := ""
		if s.LinkCount > 0 {
			extra = fmt.Sprintf("  (%d link(s) to covered events)", s.LinkCount)
		}
		fmt.Fprintf(w, "%s%-52s %-8s +%-9s %s%s\n", pfx, name, s.Kind,
			time.Duration(s.Start-t0).Round(10*time.Microsecond), time.Duration(s.End-s.Start).Round(10*time.Microsecond), extra)
		kids := children[s.SpanID]
		byStart(kids)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}
