package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// stage names the coalescer in dead letters.
const stage = "coalescer"

// decodeEvent reads a push.events record into engine input, or explains why it is poison.
func decodeEvent(msg *kafka.Message) (coalesce.EventInfo, *deadLetter) {
	schema := kafkax.Header(msg, records.HeaderSchema)
	m, err := records.Decode(schema, msg.Value)
	if err != nil {
		return coalesce.EventInfo{}, &deadLetter{msg: msg, kind: "undecodable", reason: "undecodable record: " + err.Error()}
	}
	ev, ok := m.(*wakepushv1.PushEvent)
	if !ok {
		return coalesce.EventInfo{}, &deadLetter{msg: msg, kind: "wrong type", reason: fmt.Sprintf("record is a %s, not a PushEvent", schema)}
	}
	switch {
	case ev.GetId() == "":
		return coalesce.EventInfo{}, &deadLetter{msg: msg, kind: "invalid event", reason: "invalid event: no id"}
	case ev.GetDeviceId() == "":
		return coalesce.EventInfo{}, &deadLetter{msg: msg, kind: "invalid event", reason: "invalid event: no device_id"}
	}
	accepted := msg.Time // the log's time when ingest left accepted_at out: still deterministic
	if ev.GetAcceptedAt().IsValid() {
		accepted = ev.GetAcceptedAt().AsTime()
	}
	return coalesce.EventInfo{
		ID:         ev.GetId(),
		DeviceID:   ev.GetDeviceId(),
		App:        ev.GetApp(),
		AcceptedAt: accepted,
		Urgent:     ev.GetUrgent(),
		Offset:     msg.Offset,
		Link:       trace.SpanContextFromContext(kafkax.Extract(context.Background(), msg)),
	}, nil
}

// decodeWake reads a push.wakes record.
func decodeWake(msg *kafka.Message) (*wakepushv1.Wake, error) {
	m, err := records.Decode(kafkax.Header(msg, records.HeaderSchema), msg.Value)
	if err != nil {
		return nil, err
	}
	w, ok := m.(*wakepushv1.Wake)
	if !ok {
		return nil, fmt.Errorf("record is a %s, not a Wake", records.SchemaName(m))
	}
	return w, nil
}

var wakeReasons = map[coalesce.Reason]wakepushv1.WakeReason{
	coalesce.Leading:  wakepushv1.WakeReason_WAKE_REASON_LEADING,
	coalesce.Trailing: wakepushv1.WakeReason_WAKE_REASON_TRAILING,
	coalesce.Urgent:   wakepushv1.WakeReason_WAKE_REASON_URGENT,
}

// wakeRecord is the push.wakes record of a decision.
func wakeRecord(w *coalesce.WakeDecision, app *apps.App) *wakepushv1.Wake {
	platform := wakepushv1.Platform_PLATFORM_UNSPECIFIED
	if app != nil {
		platform = app.ProtoPlatform()
	}
	return &wakepushv1.Wake{
		Id:           w.ID,
		CreatedAt:    records.Timestamp(w.At),
		DeviceId:     w.DeviceID,
		App:          w.App,
		Platform:     platform,
		Reason:       wakeReasons[w.Reason],
		EventCount:   uint32(min(w.EventCount, int(^uint32(0)))),
		EventIds:     w.EventIDs,
		FirstEventAt: records.Timestamp(w.FirstEventAt),
		LastEventAt:  records.Timestamp(w.LastEventAt),
		Urgent:       w.Urgent,
	}
}

// deadLetterNamespace makes dead-letter ids deterministic: a replay of the same poison record
// yields the same id, so the DLQ's consumers can drop the copy.
var deadLetterNamespace = uuid.MustParse("5b0f3a52-2f4c-4f53-9a43-6f7c9d1e0b11")

// deadLetterRecord wraps a poison push.events record for push.events.dlq.
func deadLetterRecord(d deadLetter, now time.Time) *wakepushv1.DeadLetter {
	return &wakepushv1.DeadLetter{
		Id:        uuid.NewSHA1(deadLetterNamespace, []byte(d.msg.Topic+"/"+strconv.Itoa(d.msg.Partition)+"/"+strconv.FormatInt(d.msg.Offset, 10))).String(),
		CreatedAt: records.Timestamp(now),
		Topic:     d.msg.Topic,
		Partition: int32(d.msg.Partition),
		Offset:    d.msg.Offset,
		Stage:     stage,
		Reason:    d.reason,
		Value:     d.msg.Value,
	}
}

// processSpan starts the CONSUMER span of a wake. It links to the creation context of every
// covered event that was sampled (at most coalesce.MaxLinks), and its parent is the first of
// them: so the trace of the first sampled publish the wake covers goes on to the provider call
// and the delivery record (with a parent-based sampler, a sampled publish is followed to the end),
// while the other events reach it through their links. Without a sampled event it is a root
// (sampled by the sampler's own ratio). The wake record is produced under it.
func (c *coalescer) processSpan(w *coalesce.WakeDecision, partition int) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(w.Links))
	parent := context.Background()
	for _, sc := range w.Links {
		if !sc.IsValid() {
			continue
		}
		if len(links) == 0 {
			parent = trace.ContextWithRemoteSpanContext(parent, sc)
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	// The SDK keeps at most linksPerSpan links on a span (OTEL_SPAN_LINK_COUNT_LIMIT): the rest
	// go on "link events" children, linksPerSpan each, so every sampled covered event is linked.
	first, rest := links[:min(len(links), linksPerSpan)], links[min(len(links), linksPerSpan):]
	// Attributes (and the link-event children) only on a recorded span: for an unsampled wake
	// they cost more than the span, and the standard samplers decide on the parent and the
	// trace id, not on attributes.
	ctx, span := c.tracer.Start(parent, processSpanName,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(first...),
		trace.WithTimestamp(w.At))
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topics.Events),
		semconv.MessagingDestinationPartitionID(strconv.Itoa(partition)),
		semconv.MessagingConsumerGroupName(c.cfg.Group),
		semconv.MessagingKafkaMessageKey(w.DeviceID),
		semconv.MessagingBatchMessageCount(w.EventCount),
		attribute.String("wakepush.wake.id", w.ID),
		attribute.String("wakepush.wake.reason", w.Reason.String()),
		attribute.String("wakepush.app", w.App),
		attribute.Int("wakepush.wake.links", len(links)),
	)
	for len(rest) > 0 {
		n := min(len(rest), linksPerSpan)
		_, child := c.tracer.Start(ctx, "link events", trace.WithLinks(rest[:n]...), trace.WithTimestamp(w.At))
		child.End(trace.WithTimestamp(w.At))
		rest = rest[n:]
	}
	return ctx, span
}

// processSpanName is the wake span's name (messaging conventions: operation and topic).
const processSpanName = "process " + topics.Events

// linksPerSpan is the OpenTelemetry SDK's default span link limit.
const linksPerSpan = 128
