package jaeger

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Client reads traces from a Jaeger query service's API v3 (OTLP JSON).
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client for the query service at base (http://host:port).
func NewClient(base string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), hc: &http.Client{Timeout: 10 * time.Second}}
}

// TraceURL is the API URL of one trace (OTLP JSON).
func (c *Client) TraceURL(traceID string) string { return c.base + "/api/v3/traces/" + traceID }

// Span is one span as Jaeger returns it, flattened: the resource's service name and attributes
// are on every span. Attribute values are their JSON text (strings unquoted).
type Span struct {
	Service      string
	Resource     map[string]string
	Scope        string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Name         string
	Kind         string // SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL
	Start, End   time.Time
	Attributes   map[string]string
	Events       []Event
	Links        []Link
	StatusCode   string
	StatusMsg    string
}

// Event is a span event.
type Event struct {
	Name       string
	Attributes map[string]string
}

// Link is a span link.
type Link struct {
	TraceID, SpanID string
	Attributes      map[string]string
}

// Trace fetches one trace; a trace Jaeger does not have is an error wrapping ErrNotFound.
func (c *Client) Trace(ctx context.Context, traceID string) ([]Span, error) {
	return c.get(ctx, c.TraceURL(traceID))
}

// ErrNotFound is returned for a trace Jaeger does not hold (yet).
var ErrNotFound = fmt.Errorf("trace not found")

// FindTraces returns the spans of every trace that has a span of service starting between
// from and to (at most limit traces), grouped by trace id.
func (c *Client) FindTraces(ctx context.Context, service string, from, to time.Time, limit int) (map[string][]Span, error) {
	q := url.Values{}
	q.Set("query.service_name", service)
	q.Set("query.start_time_min", from.UTC().Format(time.RFC3339Nano))
	q.Set("query.start_time_max", to.UTC().Format(time.RFC3339Nano))
	q.Set("query.num_traces", strconv.Itoa(limit))
	spans, err := c.get(ctx, c.base+"/api/v3/traces?"+q.Encode())
	if err != nil {
		if err == ErrNotFound {
			return map[string][]Span{}, nil
		}
		return nil, err
	}
	out := map[string][]Span{}
	for _, s := range spans {
		out[s.TraceID] = append(out[s.TraceID], s)
	}
	return out, nil
}

// Services lists the services Jaeger has spans of.
func (c *Client) Services(ctx context.Context) ([]string, error) {
	var r struct {
		Services []string `json:"services"`
	}
	if err := c.getJSON(ctx, c.base+"/api/v3/services", &r); err != nil {
		return nil, err
	}
	sort.Strings(r.Services)
	return r.Services, nil
}

func (c *Client) getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		return ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", u, err)
	}
	return nil
}

// The API v3 answer: {"result": <OTLP TracesData>}.
type otlpAnswer struct {
	Result struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []otlpKV `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Scope struct {
					Name string `json:"name"`
				} `json:"scope"`
				Spans []struct {
					TraceID      string          `json:"traceId"`
					SpanID       string          `json:"spanId"`
					ParentSpanID string          `json:"parentSpanId"`
					Name         string          `json:"name"`
					Kind         json.RawMessage `json:"kind"`
					Start        json.RawMessage `json:"startTimeUnixNano"`
					End          json.RawMessage `json:"endTimeUnixNano"`
					Attributes   []otlpKV        `json:"attributes"`
					Events       []struct {
						Name       string   `json:"name"`
						Attributes []otlpKV `json:"attributes"`
					} `json:"events"`
					Links []struct {
						TraceID    string   `json:"traceId"`
						SpanID     string   `json:"spanId"`
						Attributes []otlpKV `json:"attributes"`
					} `json:"links"`
					Status struct {
						Code    json.RawMessage `json:"code"`
						Message string          `json:"message"`
					} `json:"status"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	} `json:"result"`
}

type otlpKV struct {
	Key   string                     `json:"key"`
	Value map[string]json.RawMessage `json:"value"`
}

func attrMap(kvs []otlpKV) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		for _, v := range kv.Value { // one of stringValue, intValue, boolValue, doubleValue, arrayValue, …
			var s string
			if json.Unmarshal(v, &s) == nil {
				m[kv.Key] = s
			} else {
				m[kv.Key] = string(v)
			}
		}
	}
	return m
}

var spanKinds = map[string]string{
	"0": "UNSPECIFIED", "1": "INTERNAL", "2": "SERVER", "3": "CLIENT", "4": "PRODUCER", "5": "CONSUMER",
	"SPAN_KIND_UNSPECIFIED": "UNSPECIFIED", "SPAN_KIND_INTERNAL": "INTERNAL", "SPAN_KIND_SERVER": "SERVER",
	"SPAN_KIND_CLIENT": "CLIENT", "SPAN_KIND_PRODUCER": "PRODUCER", "SPAN_KIND_CONSUMER": "CONSUMER",
}

// enum reads a proto enum that jsonpb wrote as a number or a name.
func enum(raw json.RawMessage) string {
	return strings.Trim(string(raw), `"`)
}

// hexID returns a trace or span id as lowercase hex: OTLP JSON writes ids as hex, protobuf's
// generic JSON mapping as base64.
func hexID(id string) string {
	if _, err := hex.DecodeString(id); err == nil && (len(id) == 32 || len(id) == 16) {
		return strings.ToLower(id)
	}
	if b, err := base64.StdEncoding.DecodeString(id); err == nil && (len(b) == 16 || len(b) == 8) {
		return hex.EncodeToString(b)
	}
	return id
}

func nanos(raw json.RawMessage) time.Time {
	n, _ := strconv.ParseInt(strings.Trim(string(raw), `"`), 10, 64)
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (c *Client) get(ctx context.Context, u string) ([]Span, error) {
	var a otlpAnswer
	if err := c.getJSON(ctx, u, &a); err != nil {
		return nil, err
	}
	var out []Span
	for _, rs := range a.Result.ResourceSpans {
		res := attrMap(rs.Resource.Attributes)
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s := Span{
					Service: res["service.name"], Resource: res, Scope: ss.Scope.Name,
					TraceID: hexID(sp.TraceID), SpanID: hexID(sp.SpanID), ParentSpanID: hexID(sp.ParentSpanID),
					Name: sp.Name, Kind: spanKinds[enum(sp.Kind)], Start: nanos(sp.Start), End: nanos(sp.End),
					Attributes: attrMap(sp.Attributes), StatusCode: enum(sp.Status.Code), StatusMsg: sp.Status.Message,
				}
				if s.Kind == "" {
					s.Kind = "UNSPECIFIED"
				}
				for _, e := range sp.Events {
					s.Events = append(s.Events, Event{Name: e.Name, Attributes: attrMap(e.Attributes)})
				}
				for _, l := range sp.Links {
					s.Links = append(s.Links, Link{TraceID: hexID(l.TraceID), SpanID: hexID(l.SpanID), Attributes: attrMap(l.Attributes)})
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}
