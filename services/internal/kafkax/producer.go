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
// of recording. Slices, so that passing them does not allocate a variadic slice per call.
var (
	producedOK  = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.Bool("error", false)))}
	producedErr = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.Bool("error", true)))}
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
	b := getProduceBuf(len(recs))
	msgs, spans := b.msgs, b.spans
	for i, r := range recs {
		keyAt := len(b.data)
		b.data = append(b.data, r.Key...)
		valueAt := len(b.data)
		if r.Msg != nil {
			var err error
			if b.data, err = marshal.MarshalAppend(b.data, r.Msg); err != nil {
				p.endUnsent(spans[:i], b)
				return fmt.Errorf("encode %s: %w", records.SchemaName(r.Msg), err)
			}
		}
		// Slices of one buffer: if a later append moves it, these keep the old array.
		key := b.data[keyAt:valueAt:valueAt]
		var value []byte
		if r.Msg != nil {
			value = b.data[valueAt:len(b.data):len(b.data)]
		}
		parent := r.Ctx
		if parent == nil {
			parent = ctx
		}
		// Messaging semantic conventions (send span). Keys are device ids (keyed hashes) or
		// "<device_id>/<registration_id>", never a token or a JID, so the key may be recorded.
		// Attributes only on a recorded span: for an unsampled one they cost more than the span
		// (the standard samplers decide on the parent and the trace id, not on attributes).
		sctx, span := p.tracer.Start(parent, sendSpanName(r.Topic), producerSpan...)
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
		m := &msgs[i]
		*m = kafka.Message{Topic: r.Topic, Key: key, Value: value}
		if r.Msg != nil {
			// Room for traceparent (and tracestate) without growing; the values are shared,
			// read-only bytes (kafka-go only reads them).
			m.Headers = b.headers(i)
			m.Headers[0] = kafka.Header{Key: records.HeaderContentType, Value: contentTypeValue}
			m.Headers[1] = kafka.Header{Key: records.HeaderSchema, Value: schemaValue(r.Msg)}
		}
		b.carrier = bufCarrier{m, b}
		otel.GetTextMapPropagator().Inject(sctx, &b.carrier)
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
	p.latency.Record(ctx, time.Since(start).Seconds(), outcome...)
	for _, s := range spans {
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, "produce failed")
		}
		s.End()
	}
	// WriteMessages returns early only when ctx ends: its batches may then still be waiting
	// to be sent with these headers, keys and values, so the buffer is left to the GC.
	if err == nil || ctx.Err() == nil {
		putProduceBuf(b)
	}
	if err != nil {
		return fmt.Errorf("produce %d record(s) to %s: %w", len(recs), recs[0].Topic, err)
	}
	return nil
}

// endUnsent ends the spans of records that were never written (an encoding error) and recycles b.
func (p *Producer) endUnsent(spans []trace.Span, b *produceBuf) {
	for _, s := range spans {
		s.SetStatus(codes.Error, "not produced: a record of the call could not be encoded")
		s.End()
	}
	putProduceBuf(b)
}

// produceBuf holds what one Produce call builds for kafka-go: the messages, their spans, their
// headers (headersPerRecord each, so Inject never grows them) and one byte buffer for keys,
// values and trace header values. Pooled: per record this saves the allocations of a message
// slice, a header slice, a key copy, an encoded value and the trace header values.
type produceBuf struct {
	msgs  []kafka.Message
	spans []trace.Span
	hdrs  []kafka.Header
	data  []byte
	// carrier is the record being injected, here so that passing it as an interface does not
	// allocate.
	carrier bufCarrier
}

// headersPerRecord is the content type, the schema, traceparent and tracestate.
const headersPerRecord = 4

// maxPooledData keeps a call with a large record from pinning its buffer in the pool.
const maxPooledData = 64 << 10

var (
	produceBufs sync.Pool
	marshal     = proto.MarshalOptions{}
	// producerSpan are the start options of every producer span, made once (options passed
	// one by one are a slice allocated per call).
	producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
)

func getProduceBuf(n int) *produceBuf {
	b, _ := produceBufs.Get().(*produceBuf)
	if b == nil {
		b = &produceBuf{}
	}
	if cap(b.msgs) < n {
		b.msgs = make([]kafka.Message, n)
		b.spans = make([]trace.Span, n)
		b.hdrs = make([]kafka.Header, n*headersPerRecord)
	}
	b.msgs, b.spans, b.hdrs = b.msgs[:n], b.spans[:n], b.hdrs[:n*headersPerRecord]
	return b
}

// headers returns record i's two fixed headers, with room for the trace context.
func (b *produceBuf) headers(i int) []kafka.Header {
	return b.hdrs[i*headersPerRecord : i*headersPerRecord+2 : (i+1)*headersPerRecord]
}

func putProduceBuf(b *produceBuf) {
	if cap(b.data) > maxPooledData {
		return
	}
	clear(b.msgs)
	clear(b.spans)
	clear(b.hdrs)
	b.data = b.data[:0]
	b.carrier = bufCarrier{}
	produceBufs.Put(b)
}

// bufCarrier injects a trace context into a message's headers, the values copied into the
// call's buffer (a TextMapCarrier for Produce; HeaderCarrier is the general one).
type bufCarrier struct {
	m *kafka.Message
	b *produceBuf
}

func (c *bufCarrier) Get(key string) string { return HeaderCarrier{&c.m.Headers}.Get(key) }
func (c *bufCarrier) Keys() []string        { return HeaderCarrier{&c.m.Headers}.Keys() }

func (c *bufCarrier) Set(key, value string) {
	at := len(c.b.data)
	c.b.data = append(c.b.data, value...)
	v := c.b.data[at:len(c.b.data):len(c.b.data)]
	for i := range c.m.Headers {
		if c.m.Headers[i].Key == key {
			c.m.Headers[i].Value = v
			return
		}
	}
	c.m.Headers = append(c.m.Headers, kafka.Header{Key: key, Value: v})
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
