package kafkax

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// NewReader returns a consumer-group reader over topics that commits only when asked
// (CommitInterval 0: CommitMessages is synchronous and its errors are returned) and starts new
// groups at the oldest record.
func NewReader(cfg *Config, group string, topics ...string) (*kafka.Reader, error) {
	d, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("reader for group %s: no topics", group)
	}
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:               cfg.Brokers,
		GroupID:               group,
		GroupTopics:           topics,
		Dialer:                d,
		StartOffset:           kafka.FirstOffset,
		CommitInterval:        0,
		MinBytes:              1,
		MaxBytes:              16 << 20,
		MaxWait:               250 * time.Millisecond,
		ReadBackoffMin:        10 * time.Millisecond,
		ReadBackoffMax:        250 * time.Millisecond,
		QueueCapacity:         1000,
		ReadLagInterval:       -1,
		WatchPartitionChanges: true,
	}), nil
}

// ConsumeAttributes are the messaging semantic-convention attributes of a consumed record.
func ConsumeAttributes(group string, msg *kafka.Message) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingDestinationName(msg.Topic),
		semconv.MessagingDestinationPartitionID(fmt.Sprint(msg.Partition)),
		semconv.MessagingKafkaOffset(int(msg.Offset)),
		semconv.MessagingKafkaMessageKey(string(msg.Key)),
		semconv.MessagingConsumerGroupName(group),
	}
}

// LinkTo returns a span link to the context a record was created in (for a span that processes
// several records, such as a coalesced wake).
func LinkTo(ctx context.Context, msg *kafka.Message) trace.Link {
	return trace.LinkFromContext(Extract(ctx, msg))
}
