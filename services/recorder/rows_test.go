package main

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

var (
	t0 = time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	t1 = t0.Add(1500 * time.Millisecond)
	t2 = t0.Add(3 * time.Second)
)

func tsp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func TestRowFor(t *testing.T) {
	t.Parallel()
	msg := &kafka.Message{Topic: "push.x", Partition: 3, Offset: 42}
	tests := []struct {
		name  string
		rec   proto.Message
		table string
		want  []any
	}{
		{
			name: "event",
			rec: &wakepushv1.PushEvent{Id: "e1", AcceptedAt: tsp(t0), DeviceId: "d1", App: "im.monal", Platform: wakepushv1.Platform_PLATFORM_APNS,
				Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: "example.com", Node: "node-1", Urgent: true, Important: true,
				MessageCount: 3, PendingSubscriptionCount: 1},
			table: "events",
			want:  []any{"e1", t0, "d1", "im.monal", "APNS", "XMPP_COMPONENT", "example.com", nodeHash("node-1"), true, true, uint32(3), uint32(1), int32(3), int64(42), "", ""},
		},
		{
			name:  "event with zero values",
			rec:   &wakepushv1.PushEvent{Id: "e0"},
			table: "events",
			want:  []any{"e0", epoch, "", "", "UNSPECIFIED", "UNSPECIFIED", "", uint64(0), false, false, uint32(0), uint32(0), int32(3), int64(42), "", ""},
		},
		{
			name: "registration keeps no token",
			rec: &wakepushv1.Registration{Id: "r1", CreatedAt: tsp(t0), DeviceId: "d1", RegistrationId: "reg-1", App: "im.monal", Platform: wakepushv1.Platform_PLATFORM_FCM,
				Environment: wakepushv1.Environment_ENVIRONMENT_SANDBOX, Token: "SECRET-TOKEN", State: wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED,
				Source: wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER, Reason: "apns:Unregistered", ProviderInvalidAt: tsp(t1), RegisteredAt: tsp(t2)},
			table: "registrations",
			want:  []any{"r1", t0, "d1", "reg-1", "im.monal", "FCM", "SANDBOX", true, "UNREGISTERED", "SENDER", "apns:Unregistered", &t1, &t2, int32(3), int64(42)},
		},
		{
			name:  "registration without optional times",
			rec:   &wakepushv1.Registration{Id: "r2", CreatedAt: tsp(t0), State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE},
			table: "registrations",
			want:  []any{"r2", t0, "", "", "", "UNSPECIFIED", "UNSPECIFIED", false, "ACTIVE", "UNSPECIFIED", "", (*time.Time)(nil), (*time.Time)(nil), int32(3), int64(42)},
		},
		{
			name: "wake",
			rec: &wakepushv1.Wake{Id: "w1", CreatedAt: tsp(t2), DeviceId: "d1", App: "a", Platform: wakepushv1.Platform_PLATFORM_APNS,
				Reason: wakepushv1.WakeReason_WAKE_REASON_TRAILING, EventCount: 70, EventIds: []string{"e1", "e2"}, FirstEventAt: tsp(t0), LastEventAt: tsp(t1), Urgent: true},
			table: "wakes",
			want:  []any{"w1", t2, "d1", "a", "APNS", "TRAILING", uint32(70), []string{"e1", "e2"}, t0, t1, true, int32(3), int64(42), "", ""},
		},
		{
			name:  "wake without event ids",
			rec:   &wakepushv1.Wake{Id: "w2", CreatedAt: tsp(t2), Reason: wakepushv1.WakeReason_WAKE_REASON_URGENT},
			table: "wakes",
			want:  []any{"w2", t2, "", "", "UNSPECIFIED", "URGENT", uint32(0), []string{}, epoch, epoch, false, int32(3), int64(42), "", ""},
		},
		{
			name: "delivery",
			rec: &wakepushv1.Delivery{Id: "x1", CreatedAt: tsp(t2), WakeId: "w1", DeviceId: "d1", App: "a", Platform: wakepushv1.Platform_PLATFORM_APNS,
				Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION, Outcome: wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED, Attempt: 2,
				StatusCode: 200, Reason: "", ProviderMessageId: "apns-id-1", ProviderLatency: durationpb.New(12500 * time.Microsecond), WakeCreatedAt: tsp(t1)},
			table: "deliveries",
			want:  []any{"x1", t2, "w1", "d1", "a", "APNS", "PRODUCTION", "ACCEPTED", uint32(2), uint16(200), "", "apns-id-1", 12.5, t1, int32(3), int64(42), "", ""},
		},
		{
			name:  "delivery of an unknown future outcome keeps its number",
			rec:   &wakepushv1.Delivery{Id: "x2", Outcome: wakepushv1.DeliveryOutcome(17), StatusCode: 70000},
			table: "deliveries",
			want:  []any{"x2", epoch, "", "", "", "UNSPECIFIED", "UNSPECIFIED", "17", uint32(0), uint16(65535), "", "", 0.0, epoch, int32(3), int64(42), "", ""},
		},
		{
			name:  "receipt",
			rec:   &wakepushv1.Receipt{Id: "c1", CreatedAt: tsp(t2), WakeId: "w1", DeviceId: "d1", App: "a", ReceivedAt: tsp(t1)},
			table: "receipts",
			want:  []any{"c1", t2, "w1", "d1", "a", &t1, int32(3), int64(42), "", ""},
		},
		{
			name:  "receipt without device time",
			rec:   &wakepushv1.Receipt{Id: "c2", CreatedAt: tsp(t2)},
			table: "receipts",
			want:  []any{"c2", t2, "", "", "", (*time.Time)(nil), int32(3), int64(42), "", ""},
		},
		{
			name:  "dead letter keeps the size of the value, not the value",
			rec:   &wakepushv1.DeadLetter{Id: "l1", CreatedAt: tsp(t0), Topic: "push.wakes", Partition: 5, Offset: 99, Stage: "sender", Reason: "attempts exhausted", Value: []byte("SECRET-TOKEN-IN-VALUE")},
			table: "dead_letters",
			want:  []any{"l1", t0, "push.wakes", int32(5), int64(99), "sender", "attempts exhausted", uint32(21), "push.x", int32(3), int64(42), "", ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tab, row, err := rowFor(tt.rec, msg)
			if err != nil {
				t.Fatal(err)
			}
			if tab.name != tt.table {
				t.Errorf("table = %s, want %s", tab.name, tt.table)
			}
			if len(row) != len(tab.columns) {
				t.Fatalf("row has %d values for %d columns", len(row), len(tab.columns))
			}
			if len(tt.want) != len(tab.columns) {
				t.Fatalf("want has %d values for %d columns", len(tt.want), len(tab.columns))
			}
			for i := range row {
				if !equalValue(row[i], tt.want[i]) {
					t.Errorf("column %s = %#v (%T), want %#v (%T)", tab.columns[i], row[i], row[i], tt.want[i], tt.want[i])
				}
			}
			for i, v := range row {
				if s := fmt.Sprint(deref(v)); strings.Contains(s, "SECRET") {
					t.Errorf("column %s holds %q: tokens and values must not be recorded", tab.columns[i], s)
				}
			}
		})
	}
}

func deref(v any) any {
	if p, ok := v.(*time.Time); ok && p != nil {
		return *p
	}
	return v
}

func equalValue(got, want any) bool {
	switch w := want.(type) {
	case time.Time:
		g, ok := got.(time.Time)
		return ok && g.Equal(w) && g.Location() == time.UTC
	case *time.Time:
		g, ok := got.(*time.Time)
		if !ok || (g == nil) != (w == nil) {
			return false
		}
		return w == nil || (g.Equal(*w) && g.Location() == time.UTC)
	}
	return reflect.DeepEqual(got, want)
}

// TestTraceIDs checks that every table but registrations gets the trace id and span id of the
// record's traceparent header, and "" when the header is missing, malformed or not sampled.
func TestTraceIDs(t *testing.T) {
	t.Parallel()
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	header := func(v string) []kafka.Header { return []kafka.Header{{Key: "traceparent", Value: []byte(v)}} }
	recs := []proto.Message{
		&wakepushv1.PushEvent{Id: "e"}, &wakepushv1.Wake{Id: "w"}, &wakepushv1.Delivery{Id: "x"},
		&wakepushv1.Receipt{Id: "c"}, &wakepushv1.DeadLetter{Id: "l"},
	}
	tests := []struct {
		name        string
		headers     []kafka.Header
		trace, span string
	}{
		{"sampled", header("00-" + traceID + "-" + spanID + "-01"), traceID, spanID},
		{"not sampled", header("00-" + traceID + "-" + spanID + "-00"), "", ""},
		{"no header", nil, "", ""},
		{"malformed", header("00-" + traceID + "-zz-01"), "", ""},
		{"all-zero trace id", header("00-00000000000000000000000000000000-" + spanID + "-01"), "", ""},
	}
	for _, tt := range tests {
		msg := &kafka.Message{Topic: "push.x", Headers: tt.headers}
		for _, rec := range recs {
			tab, row, err := rowFor(rec, msg)
			if err != nil {
				t.Fatal(err)
			}
			ti, si := slices.Index(tab.columns, "trace_id"), slices.Index(tab.columns, "span_id")
			if ti < 0 || si < 0 {
				t.Fatalf("%s has no trace_id/span_id column", tab.name)
			}
			if row[ti] != tt.trace || row[si] != tt.span {
				t.Errorf("%s: %s row trace_id %q span_id %q, want %q %q", tt.name, tab.name, row[ti], row[si], tt.trace, tt.span)
			}
		}
		row := poisonRow(msg, "unknown schema")
		if row[len(row)-2] != tt.trace || row[len(row)-1] != tt.span {
			t.Errorf("%s: poison row ends %q %q, want %q %q", tt.name, row[len(row)-2], row[len(row)-1], tt.trace, tt.span)
		}
	}
}

func TestRowForUnknownType(t *testing.T) {
	t.Parallel()
	if _, _, err := rowFor(&timestamppb.Timestamp{}, &kafka.Message{}); err == nil {
		t.Error("rowFor accepted a message that is not a wakepush record")
	}
}

func TestPoisonRow(t *testing.T) {
	t.Parallel()
	msg := &kafka.Message{Topic: "push.events", Partition: 1, Offset: 7, Time: t0, Value: []byte("SECRET garbage")}
	row := poisonRow(msg, "unknown schema")
	want := []any{"recorder:push.events:1:7", t0, "push.events", int32(1), int64(7), "recorder", "unknown schema", uint32(14), "push.events", int32(1), int64(7), "", ""}
	if len(row) != len(deadLettersTable.columns) {
		t.Fatalf("poison row has %d values for %d columns", len(row), len(deadLettersTable.columns))
	}
	for i := range want {
		if !equalValue(row[i], want[i]) {
			t.Errorf("column %s = %#v, want %#v", deadLettersTable.columns[i], row[i], want[i])
		}
	}
	if !slices.Equal(poisonRow(msg, "unknown schema")[:1], row[:1]) {
		t.Error("poison row id is not deterministic")
	}
}

func TestPoisonReason(t *testing.T) {
	t.Parallel()
	for schema, want := range map[string]string{
		"":                      "missing wakepush-schema header",
		"wakepush.v9.Nope":      "unknown schema",
		"wakepush.v1.PushEvent": "undecodable wakepush.v1.PushEvent",
	} {
		if got := poisonReason(schema); got != want {
			t.Errorf("poisonReason(%q) = %q, want %q", schema, got, want)
		}
	}
}

func TestNodeHash(t *testing.T) {
	t.Parallel()
	if nodeHash("") != 0 {
		t.Error("empty node must hash to 0")
	}
	if nodeHash("a") == nodeHash("b") || nodeHash("a") != nodeHash("a") {
		t.Error("node hash must be deterministic and distinguish nodes")
	}
}

func BenchmarkRowMapping(b *testing.B) {
	msg := &kafka.Message{Topic: "push.events", Partition: 3, Offset: 42}
	ev := &wakepushv1.PushEvent{Id: "0190e0b4-7c9e-7b6a-8f7e-1c2d3e4f5a6b", AcceptedAt: tsp(t0), DeviceId: "dev-0123456789abcdef", App: "im.monal",
		Platform: wakepushv1.Platform_PLATFORM_APNS, Source: wakepushv1.EventSource_EVENT_SOURCE_XMPP_COMPONENT, Sender: "example.com", Node: "node-0123456789"}
	value, _ := proto.Marshal(ev)
	b.ReportAllocs()
	for b.Loop() {
		rec := &wakepushv1.PushEvent{}
		if err := proto.Unmarshal(value, rec); err != nil {
			b.Fatal(err)
		}
		if _, _, err := rowFor(rec, msg); err != nil {
			b.Fatal(err)
		}
	}
}
