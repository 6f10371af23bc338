package kafkax

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
)

// Precomputed measurement options: building an attribute set per call costs more than the rest
// of recording.
var (
	producedOK  = metric.WithAttributeSet(attribute.NewSet(attribute.Bool("error", false)))
	producedErr = metric.WithAttributeSet(attribute.NewSet(attribute.Bool("error", true)))
)

// sendSpanNames are the producer spans' names per topic ("send <topic>", messaging conventions),
// made once rather than per record.
var sendSpanNames = func() map[string]string {
	m := map[string]string{}
	for _, t := range topics.All {
		m[t.Name] = "send " + t.Name
	}
	return m
}()

func sendSpanName(topic string) string {
	if n, ok := sendSpanNames[topic]; ok {
		return n
	}
	return "send " + topic
}

// contentTypeValue and schemaValues are header values shared by every record (kafka-go only
// reads header values).
var (
	contentTypeValue = []byte(records.ContentType)
	schemaValues     sync.Map // protoreflect.FullName → []byte
)

func schemaValue(m proto.Message) []byte {
	name := m.ProtoReflect().Descriptor().FullName()
	if v, ok := schemaValues.Load(name); ok {
		return v.([]byte)
	}
	v := []byte(records.SchemaName(m))
	schemaValues.Store(name, v)
	return v
}

// Record is one message to produce. Ctx is the context the record is created in: its trace
// context becomes the parent of the producer span, whose context goes into the headers. A nil
// Msg is a tombstone: no value and no schema header (compaction then forgets Key).
type Record struct {
	Ctx   context.Context
	Topic string
	Key   string
	Msg   proto.Message
}

// Producer writes protobuf records and returns only once every broker replica acknowledged them
// (acks=all). kafka-go has no idempotent producer: a retried write can duplicate a record, so
// every record has a unique id and consumers deduplicate.
type Producer struct {
	w       *kafka.Writer
	tracer  trace.Tracer
	latency metric.Float64Histogram
	// inflight maps the first header of a record being written to its recording producer span,
	// so that the writer's completion callback (which sees copies of the messages, sharing
	// their header arrays) can add the partition and offset the broker assigned.
	mu       sync.Mutex
	inflight map[*kafka.Header]trace.Span
}

// NewProducer returns a producer for cfg. Keys are hashed with Murmur2 (Java-compatible), the
// same hasher every wakepush producer uses so topics stay co-partitioned by device_id. Only the
// part of a key before the first "/" is hashed (records.PartitionKey): a registration keyed
// "<device_id>/<registration_id>" lands in its device's partition.
func NewProducer(cfg *Config) (*Producer, error) {
	t, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	meter := otel.Meter("github.com/wakepush/wakepush/services/internal/kafkax")
	lat, err := meter.Float64Histogram("wakepush.kafka.produce.duration",
		metric.WithUnit("s"), metric.WithDescription("time until Kafka acknowledged a produced batch"),
		metric.WithExplicitBucketBoundaries(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
	if err != nil {
		return nil, fmt.Errorf("produce latency histogram: %w", err)
	}
	p := &Producer{
		w: &kafka.Writer{
			Addr:         kafka.TCP(cfg.Brokers...),
			Transport:    t,
			Balancer:     partitionKeyBalancer{},
			RequiredAcks: kafka.RequireAll,
			BatchTimeout: cfg.BatchTimeout,
			// kafka-go allocates room for BatchSize messages (~150 B each) for every batch, and
			// with a 2 ms timeout most batches are small: 1000 cost ~150 KB of zeroed memory
			// per batch, 6 % of ingest's CPU under load (docs/performance.md).
			BatchSize:              cfg.BatchSize,
			BatchBytes:             16 << 20,
			MaxAttempts:            5,
			WriteBackoffMin:        50 * time.Millisecond,
			WriteBackoffMax:        time.Second,
			AllowAutoTopicCreation: false,
		},
		tracer:   otel.Tracer("github.com/wakepush/wakepush/services/internal/kafkax"),
		latency:  lat,
		inflight: map[*kafka.Header]trace.Span{},
	}
	p.w.Completion = p.completed
	return p, nil
}

// completed is the writer's completion callback, called once per partition batch before
// WriteMessages returns: it puts the partition and offset of each written record on its span.
func (p *Producer) completed(msgs []kafka.Message, err error) {
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inflight) == 0 {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		if len(m.Headers) == 0 {
			continue
		}
		if s, ok := p.inflight[&m.Headers[0]]; ok {
			s.SetAttributes(
				semconv.MessagingDestinationPartitionID(strconv.Itoa(m.Partition)),
				semconv.MessagingKafkaOffset(int(m.Offset)),
			)
		}
	}
}

// Produce writes records and waits for their acknowledgement.
func (p *Producer) Produce(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs))
	spans := make([]trace.Span, len(recs))
	for i, r := range recs {
		var value []byte
		if r.Msg != nil {
			var err error
			if value, err = proto.Marshal(r.Msg); err != nil {
				return fmt.Errorf("encode %s: %w", records.SchemaName(r.Msg), err)
			}
		}
		parent := r.Ctx
		if parent == nil {
			parent = ctx
		}
		// Messaging semantic conventions (send span). Keys are device ids (keyed hashes) or
		// "<device_id>/<registration_id>", never a token or a JID, so the key may be recorded.
		// Attributes only on a recorded span: for an unsampled one they cost more than the span
		// (the standard samplers decide on the parent and the trace id, not on attributes).
		sctx, span := p.tracer.Start(parent, sendSpanName(r.Topic), trace.WithSpanKind(trace.SpanKindProducer))
		if span.IsRecording() {
			span.SetAttributes(
				semconv.MessagingSystemKafka,
				semconv.MessagingOperationTypeSend,
				semconv.MessagingOperationName("send"),
				semconv.MessagingDestinationName(r.Topic),
				semconv.MessagingKafkaMessageKey(r.Key),
			)
		}
		spans[i] = span
		var headers []kafka.Header
		if r.Msg != nil {
			// Room for traceparent (and tracestate) without growing; the values are shared,
			// read-only bytes (kafka-go only reads them).
			headers = make([]kafka.Header, 2, 4)
			headers[0] = kafka.Header{Key: records.HeaderContentType, Value: contentTypeValue}
			headers[1] = kafka.Header{Key: records.HeaderSchema, Value: schemaValue(r.Msg)}
		}
		Inject(sctx, &headers)
		msgs[i] = kafka.Message{Topic: r.Topic, Key: []byte(r.Key), Value: value, Headers: headers}
	}
	tracked := p.track(msgs, spans)
	start := time.Now()
	err := p.w.WriteMessages(ctx, msgs...)
	if tracked {
		p.untrack(msgs)
	}
	outcome := producedOK
	if err != nil {
		outcome = producedErr
	}
	p.latency.Record(ctx, time.Since(start).Seconds(), outcome)
	for _, s := range spans {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, "produce failed")
		}
		s.End()
	}
	if err != nil {
		return fmt.Errorf("produce %d record(s) to %s: %w", len(recs), recs[0].Topic, err)
	}
	return nil
}

// track registers the recording spans of msgs for completed; it reports whether any was.
func (p *Producer) track(msgs []kafka.Message, spans []trace.Span) bool {
	tracked := false
	for i := range msgs {
		if spans[i].IsRecording() && len(msgs[i].Headers) > 0 {
			if !tracked {
				p.mu.Lock()
				defer p.mu.Unlock()
				tracked = true
			}
			p.inflight[&msgs[i].Headers[0]] = spans[i]
		}
	}
	return tracked
}

func (p *Producer) untrack(msgs []kafka.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range msgs {
		if len(msgs[i].Headers) > 0 {
			delete(p.inflight, &msgs[i].Headers[0])
		}
	}
}

// partitionKeyBalancer is kafka-go's Murmur2Balancer on records.PartitionKey of the key.
type partitionKeyBalancer struct{ murmur kafka.Murmur2Balancer }

func (b partitionKeyBalancer) Balance(msg kafka.Message, partitions ...int) int {
	msg.Key = records.PartitionKey(msg.Key)
	return b.murmur.Balance(msg, partitions...)
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
