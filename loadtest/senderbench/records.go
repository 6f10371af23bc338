package senderbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
)

// partitions is the partition count of every topic, as the load test runs the services
// (WAKEPUSH_KAFKA_PARTITIONS=4).
const partitions = 4

// senderTopics are the topics the sender reads and writes, created by the harness before the
// registrations are written (the sender finds them in place, like after wakepushctl migrate).
var senderTopics = []string{topics.Wakes, topics.Registrations, topics.Deliveries, topics.WakesDLQ}

// createTopics creates the sender's topics with their shared specs (schemas/topics).
func createTopics(ctx context.Context, addr string) error {
	var specs []topics.Spec
	for _, name := range senderTopics {
		s, ok := topics.Lookup(name)
		if !ok {
			return fmt.Errorf("topic %s has no spec in schemas/topics", name)
		}
		specs = append(specs, s)
	}
	tr := &kafka.Transport{} // not the shared DefaultTransport: it caches metadata per address
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second, Transport: tr}
	if err := topics.Ensure(ctx, c, topics.Layout{Partitions: partitions, ReplicationFactor: 1}, specs...); err != nil {
		return fmt.Errorf("create the sender's topics: %w", err)
	}
	return nil
}

// registrationRecord is the push.registrations record ingest writes when a device registers
// through the HTTP API (services/ingest/core Register): ACTIVE, production, the token.
func registrationRecord(d *Device, app string, now time.Time) *wakepushv1.Registration {
	ts := records.Timestamp(now)
	return &wakepushv1.Registration{
		Id:             records.NewID(),
		CreatedAt:      ts,
		DeviceId:       d.DeviceID,
		RegistrationId: d.RegistrationID,
		App:            app,
		Platform:       wakepushv1.Platform_PLATFORM_APNS,
		Environment:    wakepushv1.Environment_ENVIRONMENT_PRODUCTION,
		Token:          d.Token,
		State:          wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE,
		Source:         wakepushv1.RegistrationSource_REGISTRATION_SOURCE_HTTP_API,
		RegisteredAt:   ts,
	}
}

// wakeRecord is the push.wakes record the coalescer writes for a leading wake covering the
// device's one event (services/coalescer wakeRecord).
func wakeRecord(d *Device, app string, now time.Time) *wakepushv1.Wake {
	at := records.Timestamp(d.AcceptedAt)
	return &wakepushv1.Wake{
		Id:           d.WakeID,
		CreatedAt:    records.Timestamp(now),
		DeviceId:     d.DeviceID,
		App:          app,
		Platform:     wakepushv1.Platform_PLATFORM_APNS,
		Reason:       wakepushv1.WakeReason_WAKE_REASON_LEADING,
		EventCount:   1,
		EventIds:     []string{d.EventID},
		FirstEventAt: at,
		LastEventAt:  at,
	}
}

// message is a Kafka record as the services' kafkax.Producer writes it: the key, the protobuf
// value, the content-type and schema headers, and a W3C traceparent (kafkax injects the
// producer span's context; with no exporter configured the services create valid, unsampled
// spans, so the header is there with flags 00).
func message(topic, key string, m proto.Message) (kafka.Message, error) {
	v, err := proto.Marshal(m)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode %s: %w", records.SchemaName(m), err)
	}
	return kafka.Message{
		Topic: topic,
		Key:   []byte(key),
		Value: v,
		Headers: []kafka.Header{
			{Key: records.HeaderContentType, Value: []byte(records.ContentType)},
			{Key: records.HeaderSchema, Value: []byte(records.SchemaName(m))},
			{Key: records.HeaderTraceParent, Value: []byte(traceParent())},
		},
	}, nil
}

// traceParent is a new unsampled W3C trace context.
func traceParent() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-00"
}

// partitionKeyBalancer is the services' balancer (kafkax): Murmur2 (Java-compatible) over the
// part of the key before the first "/" (records.PartitionKey), so a registration keyed
// device_id/registration_id lands in its device's partition.
type partitionKeyBalancer struct{ murmur kafka.Murmur2Balancer }

func (b partitionKeyBalancer) Balance(msg kafka.Message, parts ...int) int {
	msg.Key = records.PartitionKey(msg.Key)
	return b.murmur.Balance(msg, parts...)
}

// newWriter is a writer configured like kafkax.NewProducer (acks=all, 2 ms batches of ≤ 100),
// on a transport of its own (closeWriter closes both).
func newWriter(addr string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(addr),
		Transport:              &kafka.Transport{},
		Balancer:               partitionKeyBalancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           2 * time.Millisecond,
		BatchSize:              100,
		BatchBytes:             16 << 20,
		MaxAttempts:            5,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
	}
}

// closeWriter flushes and closes w and its transport's connections.
func closeWriter(w *kafka.Writer) error {
	err := w.Close()
	if tr, ok := w.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	return err
}

// produceAll writes one record per device, built by mk, from a few producers at once, each
// writing chunks of records and waiting for their acknowledgement (as the coalescer writes a
// fetched batch's wakes).
func produceAll(ctx context.Context, w *kafka.Writer, devs []Device, mk func(*Device) (kafka.Message, error)) error {
	const (
		producers = 4
		chunk     = 500
	)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	next := make(chan int)
	for range producers {
		wg.Go(func() {
			msgs := make([]kafka.Message, 0, chunk)
			for start := range next {
				msgs = msgs[:0]
				for i := start; i < min(start+chunk, len(devs)); i++ {
					m, err := mk(&devs[i])
					if err != nil {
						cancel(err)
						return
					}
					msgs = append(msgs, m)
				}
				if err := w.WriteMessages(ctx, msgs...); err != nil {
					cancel(fmt.Errorf("produce %d records to %s: %w", len(msgs), msgs[0].Topic, err))
					return
				}
			}
		})
	}
	FeedChunks(ctx, next, 0, len(devs), chunk)
	wg.Wait()
	return context.Cause(ctx)
}

// FeedChunks sends the start of every chunk of [from, to) to next, the work queue of a pool of
// producers, until ctx ends; then it closes next.
func FeedChunks(ctx context.Context, next chan<- int, from, to, chunk int) {
	defer close(next)
	for start := from; start < to; start += chunk {
		select {
		case next <- start:
		case <-ctx.Done():
			return
		}
	}
}
