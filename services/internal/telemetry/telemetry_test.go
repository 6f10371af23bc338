package telemetry

import (
	"context"
	"testing"
)

// Without an exporter, spans are not recorded but still carry valid ids (so trace context flows
// through Kafka headers and logs); with a sampler chosen by the operator, that choice wins.
func TestSetupSampling(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		recording bool
	}{
		{"no exporter", nil, false},
		{"sampler from env", map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, true},
		{"otlp exporter", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
			t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "")
			t.Setenv("OTEL_TRACES_SAMPLER", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p, err := Setup(context.Background(), "test", "dev")
			if err != nil {
				t.Fatal(err)
			}
			_, span := p.Tracer.Tracer("t").Start(context.Background(), "op")
			if !span.SpanContext().IsValid() {
				t.Error("span context is not valid: trace ids would not propagate")
			}
			if span.IsRecording() != tt.recording {
				t.Errorf("recording = %v, want %v", span.IsRecording(), tt.recording)
			}
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 0)
			cancel()
			p.Shutdown(ctx)
		})
	}
}
