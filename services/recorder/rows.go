package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// table is a ClickHouse table the recorder writes, with the columns it inserts, in the order of
// the rows that rowFor returns. The DDL is in schemas/clickhouse/migrations.
type table struct {
	name    string
	columns []string
}

var (
	eventsTable = table{"events", []string{
		"id", "accepted_at", "device_id", "app", "platform", "source", "sender", "node_hash",
		"urgent", "important", "message_count", "pending_subscription_count", "kafka_partition", "kafka_offset",
		"trace_id", "span_id",
	}}
	registrationsTable = table{"registrations", []string{
		"id", "created_at", "device_id", "registration_id", "app", "platform", "environment", "has_token", "state", "source",
		"reason", "provider_invalid_at", "registered_at", "kafka_partition", "kafka_offset",
	}}
	wakesTable = table{"wakes", []string{
		"id", "created_at", "device_id", "app", "platform", "reason", "event_count", "event_ids",
		"first_event_at", "last_event_at", "urgent", "kafka_partition", "kafka_offset",
		"trace_id", "span_id",
	}}
	deliveriesTable = table{"deliveries", []string{
		"id", "created_at", "wake_id", "device_id", "app", "platform", "environment", "outcome", "attempt",
		"status_code", "reason", "provider_message_id", "provider_latency_ms", "wake_created_at",
		"kafka_partition", "kafka_offset", "trace_id", "span_id",
	}}
	receiptsTable = table{"receipts", []string{
		"id", "created_at", "wake_id", "device_id", "app", "received_at", "kafka_partition", "kafka_offset",
		"trace_id", "span_id",
	}}
	deadLettersTable = table{"dead_letters", []string{
		"id", "created_at", "source_topic", "source_partition", "source_offset", "stage", "reason",
		"value_bytes", "kafka_topic", "kafka_partition", "kafka_offset", "trace_id", "span_id",
	}}

	// tables lists every table in the order a flush inserts them.
	tables = []table{eventsTable, registrationsTable, wakesTable, deliveriesTable, receiptsTable, deadLettersTable}
)

// rowFor maps a decoded record, read from msg, to its table and row. Only fields that carry no
// content and no provider token are kept (DESIGN §4). Rows of every table but registrations end
// with the trace id and span id from msg's traceparent header (traceIDs).
func rowFor(rec proto.Message, msg *kafka.Message) (table, []any, error) {
	part, off := int32(msg.Partition), msg.Offset
	traceID, spanID := traceIDs(msg)
	switch r := rec.(type) {
	case *wakepushv1.PushEvent:
		return eventsTable, []any{
			r.GetId(), ts(r.GetAcceptedAt()), r.GetDeviceId(), r.GetApp(),
			enumName(r.GetPlatform().String(), "PLATFORM_"),
			enumName(r.GetSource().String(), "EVENT_SOURCE_"),
			r.GetSender(), nodeHash(r.GetNode()),
			r.GetUrgent(), r.GetImportant(), r.GetMessageCount(), r.GetPendingSubscriptionCount(),
			part, off, traceID, spanID,
		}, nil
	case *wakepushv1.Registration:
		return registrationsTable, []any{
			r.GetId(), ts(r.GetCreatedAt()), r.GetDeviceId(), r.GetRegistrationId(), r.GetApp(),
			enumName(r.GetPlatform().String(), "PLATFORM_"),
			enumName(r.GetEnvironment().String(), "ENVIRONMENT_"),
			r.GetToken() != "",
			enumName(r.GetState().String(), "REGISTRATION_STATE_"),
			enumName(r.GetSource().String(), "REGISTRATION_SOURCE_"),
			r.GetReason(), optTS(r.GetProviderInvalidAt()), optTS(r.GetRegisteredAt()),
			part, off,
		}, nil
	case *wakepushv1.Wake:
		ids := r.GetEventIds()
		if ids == nil {
			ids = []string{}
		}
		return wakesTable, []any{
			r.GetId(), ts(r.GetCreatedAt()), r.GetDeviceId(), r.GetApp(),
			enumName(r.GetPlatform().String(), "PLATFORM_"),
			enumName(r.GetReason().String(), "WAKE_REASON_"),
			r.GetEventCount(), ids, ts(r.GetFirstEventAt()), ts(r.GetLastEventAt()), r.GetUrgent(),
			part, off, traceID, spanID,
		}, nil
	case *wakepushv1.Delivery:
		var latencyMS float64
		if d := r.GetProviderLatency(); d != nil {
			latencyMS = float64(d.AsDuration()) / float64(time.Millisecond)
		}
		return deliveriesTable, []any{
			r.GetId(), ts(r.GetCreatedAt()), r.GetWakeId(), r.GetDeviceId(), r.GetApp(),
			enumName(r.GetPlatform().String(), "PLATFORM_"),
			enumName(r.GetEnvironment().String(), "ENVIRONMENT_"),
			enumName(r.GetOutcome().String(), "DELIVERY_OUTCOME_"),
			r.GetAttempt(), uint16(min(r.GetStatusCode(), 65535)), r.GetReason(), r.GetProviderMessageId(),
			latencyMS, ts(r.GetWakeCreatedAt()),
			part, off, traceID, spanID,
		}, nil
	case *wakepushv1.Receipt:
		return receiptsTable, []any{
			r.GetId(), ts(r.GetCreatedAt()), r.GetWakeId(), r.GetDeviceId(), r.GetApp(), optTS(r.GetReceivedAt()),
			part, off, traceID, spanID,
		}, nil
	case *wakepushv1.DeadLetter:
		return deadLettersTable, []any{
			r.GetId(), ts(r.GetCreatedAt()), r.GetTopic(), r.GetPartition(), r.GetOffset(), r.GetStage(),
			r.GetReason(), uint32(min(len(r.GetValue()), 1<<32-1)),
			msg.Topic, part, off, traceID, spanID,
		}, nil
	}
	return table{}, nil, fmt.Errorf("no table for record type %T", rec)
}

// Poison records (not decodable) become dead_letters rows of stage "recorder".
const poisonStage = "recorder"

// poisonRow is the dead_letters row of a record the recorder could not decode. It is
// deterministic (a re-read yields the same row) and holds only the value's size.
func poisonRow(msg *kafka.Message, reason string) []any {
	created := msg.Time.UTC()
	if msg.Time.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	traceID, spanID := traceIDs(msg)
	return []any{
		fmt.Sprintf("%s:%s:%d:%d", poisonStage, msg.Topic, msg.Partition, msg.Offset),
		created, msg.Topic, int32(msg.Partition), msg.Offset, poisonStage, reason,
		uint32(min(len(msg.Value), 1<<32-1)),
		msg.Topic, int32(msg.Partition), msg.Offset, traceID, spanID,
	}
}

// traceContext reads W3C traceparent headers. It is used directly rather than through the
// global propagator, so the columns do not depend on how telemetry is set up.
var traceContext propagation.TraceContext

// traceIDs returns the trace id and span id (lower-case hex) of the traceparent header of msg:
// the context of the producer span that wrote the record. Both are "" when the header is
// missing or malformed, or when the trace was not sampled (no trace backend has it, so the id
// would lead nowhere; services that export nothing create unsampled spans).
func traceIDs(msg *kafka.Message) (traceID, spanID string) {
	sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), kafkax.HeaderCarrier{Headers: &msg.Headers}))
	if !sc.IsValid() || !sc.IsSampled() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// enumName turns a protobuf enum value name into the table's form: "PLATFORM_APNS" → "APNS".
// Values this build does not know keep their number ("7").
func enumName(name, prefix string) string {
	return strings.TrimPrefix(name, prefix)
}

var epoch = time.Unix(0, 0).UTC()

// ts converts a required timestamp; a missing one becomes the Unix epoch.
func ts(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return epoch
	}
	return t.AsTime().UTC()
}

// optTS converts an optional timestamp to a Nullable column value.
func optTS(t *timestamppb.Timestamp) *time.Time {
	if t == nil {
		return nil
	}
	v := t.AsTime().UTC()
	return &v
}

// nodeHash is the first 8 bytes of SHA-256(node), 0 for no node. The node itself is not stored:
// in fpush-style registrations it is the provider token.
func nodeHash(node string) uint64 {
	if node == "" {
		return 0
	}
	sum := sha256.Sum256([]byte(node))
	return binary.BigEndian.Uint64(sum[:8])
}
