package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

func TestHeaderCarrier(t *testing.T) {
	var h []kafka.Header
	c := kafkax.HeaderCarrier{Headers: &h}
	c.Set("a", "1")
	c.Set("b", "2")
	c.Set("a", "3")
	if c.Get("a") != "3" || c.Get("b") != "2" || c.Get("missing") != "" || len(h) != 2 || strings.Join(c.Keys(), ",") != "a,b" {
		t.Fatalf("carrier state %v", h)
	}
}

// producerFixture records spans of the global tracer provider, creates push.events (3
// partitions) on a test broker and returns a producer for it, closed when the test ends.
func producerFixture(t *testing.T) (*tracetest.SpanRecorder, *kafkax.Config, *kafkax.Producer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(t)}, Partitions: 3, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond}
	return rec, cfg, startProducer(t, cfg, topics.Events)
}

// startProducer creates topics on cfg's broker and returns a producer for them, closed when the
// test ends.
func startProducer(tb testing.TB, cfg *kafkax.Config, names ...string) *kafkax.Producer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, names...); err != nil {
		tb.Fatal(err)
	}
	p, err := kafkax.NewProducer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// The producer writes acknowledged records keyed by device id with the schema headers, and the
// trace context in the headers is a producer span that is a child of the caller's span.
func TestProducer(t *testing.T) {
	rec, cfg, p := producerFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	parentCtx, parent := otel.Tracer("test").Start(ctx, "request")
	ev := &wakepushv1.PushEvent{Id: records.NewID(), DeviceId: "0123456789abcdef0123456789abcdef", App: "im.example"}
	if err := p.Produce(ctx, kafkax.Record{Ctx: parentCtx, Topic: topics.Events, Key: ev.DeviceId, Msg: ev}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	r := partitionReader(t, cfg, topics.Events, partitionOf(t, cfg, ev.DeviceId))
	defer r.Close()
	msg, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Key) != ev.DeviceId {
		t.Errorf("key %q", msg.Key)
	}
	if kafkax.Header(&msg, records.HeaderContentType) != records.ContentType || kafkax.Header(&msg, records.HeaderSchema) != "wakepush.v1.PushEvent" {
		t.Errorf("headers %v", msg.Headers)
	}
	got, err := records.Decode(kafkax.Header(&msg, records.HeaderSchema), msg.Value)
	if err != nil || !proto.Equal(got, ev) {
		t.Fatalf("decoded %v (%v), want %v", got, err, ev)
	}
	sc := trace.SpanContextFromContext(kafkax.Extract(context.Background(), &msg))
	var producer sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().SpanID() == sc.SpanID() {
			producer = s
		}
	}
	if producer == nil || producer.SpanKind() != trace.SpanKindProducer || producer.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("header trace context %v is not a producer span under the request span", sc)
	}
	// Messaging semantic conventions, with the partition and offset the broker assigned.
	attrs := map[string]string{}
	for _, kv := range producer.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	want := map[string]string{
		"messaging.system":                   "kafka",
		"messaging.operation.type":           "send",
		"messaging.operation.name":           "send",
		"messaging.destination.name":         topics.Events,
		"messaging.kafka.message.key":        ev.DeviceId,
		"messaging.destination.partition.id": strconv.Itoa(msg.Partition),
		"messaging.kafka.offset":             strconv.FormatInt(msg.Offset, 10),
	}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("producer span %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
		}
	}
	if producer.Name() != "send "+topics.Events {
		t.Errorf("producer span name %q", producer.Name())
	}
}

// Concurrent Produce calls, several records each, over several partitions: every producer span
// gets the partition and offset of its own record.
func TestProducerSpanOffsetsConcurrent(t *testing.T) {
	rec, cfg, p := producerFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	devices := []string{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "00000000000000000000000000000001", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var recs []kafkax.Record
			for i := range 5 {
				dev := devices[(g+i)%len(devices)]
				recs = append(recs, kafkax.Record{Topic: topics.Events, Key: dev, Msg: &wakepushv1.PushEvent{Id: records.NewID(), DeviceId: dev}})
			}
			if err := p.Produce(ctx, recs...); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Read everything back and index the records by their producer span id.
	type pos struct {
		partition int
		offset    int64
	}
	bySpan := map[trace.SpanID]pos{}
	for part := range 3 {
		for _, msg := range readPartition(t, cfg, topics.Events, part) {
			bySpan[trace.SpanContextFromContext(kafkax.Extract(context.Background(), &msg)).SpanID()] = pos{msg.Partition, msg.Offset}
		}
	}
	if len(bySpan) != 20 {
		t.Fatalf("read back %d records, want 20", len(bySpan))
	}
	for _, s := range rec.Ended() {
		want, ok := bySpan[s.SpanContext().SpanID()]
		if !ok {
			t.Errorf("span %s has no record", s.Name())
			continue
		}
		got := pos{-1, -1}
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case "messaging.destination.partition.id":
				got.partition, _ = strconv.Atoi(kv.Value.AsString())
			case "messaging.kafka.offset":
				got.offset = kv.Value.AsInt64()
			}
		}
		if got != want {
			t.Errorf("span %s: partition/offset %v, record at %v", s.SpanContext().SpanID(), got, want)
		}
	}
}

// A registration keyed "<device_id>/<registration_id>" lands in the partition of "<device_id>"
// (the topic stays co-partitioned by device), and a record without Msg is a tombstone: no
// value, no schema header.
func TestProducerRegistrationKeysAndTombstones(t *testing.T) {
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(t)}, Partitions: 3, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond}
	p := startProducer(t, cfg, topics.Registrations)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Device ids whose plain keys fall into every partition, each with a registration id whose
	// whole composite key alone would hash elsewhere for at least one of them.
	devices := []string{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "00000000000000000000000000000001", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}
	const regID = "5c0ffee55c0ffee55c0ffee55c0ffee5"
	moved := false
	for _, dev := range devices {
		key := records.RegistrationKey(dev, regID)
		if partitionOf(t, cfg, key) != partitionOf(t, cfg, dev) {
			moved = true
		}
		reg := &wakepushv1.Registration{Id: records.NewID(), DeviceId: dev, RegistrationId: regID}
		if err := p.Produce(ctx, kafkax.Record{Topic: topics.Registrations, Key: key, Msg: reg},
			kafkax.Record{Topic: topics.Registrations, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if !moved {
		t.Fatal("test data: every composite key hashes like its device id; pick other ids")
	}
	for _, dev := range devices {
		r := partitionReader(t, cfg, topics.Registrations, partitionOf(t, cfg, dev))
		var got []kafka.Message
		for len(got) < 2 {
			msg, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("device %s: %v", dev, err)
			}
			if string(msg.Key) == records.RegistrationKey(dev, regID) {
				got = append(got, msg)
			}
		}
		r.Close()
		if got[0].Value == nil || kafkax.Header(&got[0], records.HeaderSchema) != "wakepush.v1.Registration" {
			t.Errorf("device %s: registration record %v", dev, got[0])
		}
		if got[1].Value != nil || kafkax.Header(&got[1], records.HeaderSchema) != "" {
			t.Errorf("device %s: tombstone has value %q, headers %v", dev, got[1].Value, got[1].Headers)
		}
	}
}

// partitionReader reads one partition from its start with wakepush's fetch settings. A
// kafka-go reader with the default MaxWait (10 s) takes that long to close once caught up.
func partitionReader(t *testing.T, cfg *kafkax.Config, topic string, partition int) *kafka.Reader {
	t.Helper()
	d, err := cfg.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	return kafka.NewReader(kafkax.PartitionReaderConfig(cfg.Brokers, d, topic, partition))
}

// readPartition returns every record of a partition: those read until none came for a second.
func readPartition(t *testing.T, cfg *kafkax.Config, topic string, partition int) []kafka.Message {
	t.Helper()
	r := partitionReader(t, cfg, topic, partition)
	defer r.Close()
	var msgs []kafka.Message
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		msg, err := r.ReadMessage(ctx)
		cancel()
		if err != nil {
			return msgs
		}
		msgs = append(msgs, msg)
	}
}

// partitionOf is where the Murmur2 balancer (Java-compatible) puts key.
func partitionOf(t *testing.T, cfg *kafkax.Config, key string) int {
	t.Helper()
	return (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(key)}, 0, 1, 2)
}

// Topics are created once with the spec's cleanup policy; a topic with another partition count
// is refused, because co-partitioning by device id depends on one count everywhere.
func TestEnsureTopics(t *testing.T) {
	brokers := []string{stacktest.Kafka(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := &kafkax.Config{Brokers: brokers, Partitions: 4, ReplicationFactor: 1}
	for range 2 { // idempotent
		if err := cfg.EnsureTopics(ctx, topics.Registrations, topics.Wakes); err != nil {
			t.Fatal(err)
		}
	}
	client, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kafkax.CloseClient(client)
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topics.Registrations, ConfigNames: []string{"cleanup.policy"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.Resources[0].ConfigEntries[0].ConfigValue; v != "compact" {
		t.Errorf("%s cleanup.policy = %q, want compact", topics.Registrations, v)
	}
	other := &kafkax.Config{Brokers: brokers, Partitions: 6, ReplicationFactor: 1}
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if err := other.EnsureTopics(short, topics.Wakes); err == nil || !strings.Contains(err.Error(), "has 4 partitions, want 6") {
		t.Fatalf("mismatched partition count: %v", err)
	}
	if err := cfg.EnsureTopics(ctx, "no.such.topic"); err == nil {
		t.Fatal("a topic without a spec was accepted")
	}
}

func TestMain(m *testing.M) { stacktest.Main(m) }

// A Produce whose context ends while its batch still waits in kafka-go returns, but its batch
// is sent later with the keys, values and headers it was given: those must not be reused by the
// calls that follow (the producer recycles a call's buffers only once kafka-go is done with
// them). Every record read back must still be the record produced under its key.
func TestProduceAbandonedKeepsItsRecords(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	// Batches wait up to 300 ms to fill: the first call's context ends long before.
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(t)}, Partitions: 3, ReplicationFactor: 1, BatchTimeout: 300 * time.Millisecond, BatchSize: 1000}
	p := startProducer(t, cfg, topics.Events)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	event := func(i int) kafkax.Record {
		dev := fmt.Sprintf("%032x", i)
		return kafkax.Record{Topic: topics.Events, Key: dev, Msg: &wakepushv1.PushEvent{Id: records.NewID(), DeviceId: dev, App: fmt.Sprintf("app-%d", i)}}
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	err := p.Produce(short, event(0), event(1), event(2))
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned call: %v, want a deadline error", err)
	}
	// Later calls, one after the other on this goroutine: each would get a recycled buffer.
	for i := 3; i < 40; i += 3 {
		if err := p.Produce(ctx, event(i), event(i+1), event(i+2)); err != nil {
			t.Fatal(err)
		}
	}
	byKey := map[string]*wakepushv1.PushEvent{}
	for part := range 3 {
		for _, msg := range readPartition(t, cfg, topics.Events, part) {
			got, err := records.Decode(kafkax.Header(&msg, records.HeaderSchema), msg.Value)
			if err != nil {
				t.Fatalf("record under key %s: %v", msg.Key, err)
			}
			ev := got.(*wakepushv1.PushEvent)
			if ev.DeviceId != string(msg.Key) || partitionOf(t, cfg, ev.DeviceId) != part {
				t.Errorf("record under key %s in partition %d is device %s's", msg.Key, part, ev.DeviceId)
			}
			byKey[string(msg.Key)] = ev
		}
	}
	for i := range 42 {
		dev := fmt.Sprintf("%032x", i)
		ev, ok := byKey[dev]
		if !ok {
			if i < 3 {
				t.Errorf("abandoned record %d was not written (kafka-go sends a batch even after its caller left)", i)
			} else {
				t.Errorf("record %d missing", i)
			}
			continue
		}
		if ev.App != fmt.Sprintf("app-%d", i) {
			t.Errorf("record %d: app %q", i, ev.App)
		}
	}
}
