package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestNew(t *testing.T) {
	tests := []struct {
		format, level string
		wantErr       string
	}{
		{"json", "info", ""},
		{"text", "debug", ""},
		{"JSON", "warn", ""},
		{"xml", "info", "log format"},
		{"json", "loud", "log level"},
	}
	for _, tt := range tests {
		_, err := New(&bytes.Buffer{}, tt.format, tt.level, "svc")
		if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("New(%q, %q) error = %v, want %q", tt.format, tt.level, err, tt.wantErr)
		}
	}
}

// Records logged with a context that carries a span get its trace and span ids, so logs join
// traces; records without one get none.
func TestTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "json", "info", "svc")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.With("k", "v").InfoContext(ctx, "with span")
	log.Info("without span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines", len(lines))
	}
	var first, second map[string]any
	json.Unmarshal([]byte(lines[0]), &first)
	json.Unmarshal([]byte(lines[1]), &second)
	if first["trace_id"] != tid.String() || first["span_id"] != sid.String() || first["service"] != "svc" || first["k"] != "v" {
		t.Errorf("record with span: %v", first)
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("record without span has a trace id: %v", second)
	}
}
