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
	rc := readerConfig(cfg.Brokers, d)
	rc.GroupID = group
	rc.GroupTopics = topics
	rc.StartOffset = kafka.FirstOffset
	rc.CommitInterval = 0
	rc.WatchPartitionChanges = true
	return kafka.NewReader(rc), nil
}

// PartitionReaderConfig is the configuration of a reader of one partition outside any group
// (restoring state, following a whole topic), with the fetch settings every wakepush reader
// shares; callers adjust what differs (QueueCapacity, MaxWait, ErrorLogger).
func PartitionReaderConfig(brokers []string, d *kafka.Dialer, topic string, partition int) kafka.ReaderConfig {
	rc := readerConfig(brokers, d)
	rc.Topic = topic
	rc.Partition = partition
	return rc
}

// readerConfig holds the fetch settings of every wakepush reader: fetch as soon as one byte is
// there, wait at most 250 ms, up to 16 MiB, and no lag polling (nobody reads it).
func readerConfig(brokers []string, d *kafka.Dialer) kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:         brokers,
		Dialer:          d,
		MinBytes:        1,
		MaxBytes:        16 << 20,
		MaxWait:         250 * time.Millisecond,
		ReadBackoffMin:  10 * time.Millisecond,
		ReadBackoffMax:  250 * time.Millisecond,
		QueueCapacity:   1000,
		ReadLagInterval: -1,
	}
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
