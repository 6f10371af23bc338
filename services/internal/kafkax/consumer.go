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
// groups at the oldest record. Its fetches return as soon as one record is there.
func NewReader(cfg *Config, group string, topics ...string) (*kafka.Reader, error) {
	return NewBulkReader(cfg, group, 1, topics...)
}

// NewBulkReader is NewReader for a consumer that batches anyway (the recorder): the broker
// holds each fetch until minBytes are there, or FetchWait has passed. At a low rate that is one
// fetch per partition every FetchWait instead of one per record or two; every fetch costs the
// consumer a request, a response and their system calls, and the broker as much again.
func NewBulkReader(cfg *Config, group string, minBytes int, topics ...string) (*kafka.Reader, error) {
	d, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	if len(topics) == 0 {
		return nil, fmt.Errorf("reader for group %s: no topics", group)
	}
	rc := readerConfig(cfg.Brokers, d)
	rc.MinBytes = max(minBytes, 1)
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

// FetchWait is how long the broker holds a fetch of a reader that is caught up before it answers
// empty, and so also about how long closing an idle reader takes (kafka-go's Close waits for the
// fetch in flight). ReaderMaxWait is the kafka-go MaxWait that gives it.
//
// kafka-go's Reader uses MaxWait twice: as the socket deadline of each fetch, and, less a
// round-trip allowance, as the wait it asks the broker for. The allowance is 1 s, or a quarter of
// MaxWait when MaxWait is under 1 s. MaxWait used to be 250 ms: the broker waited 187 ms and its
// answer then had 62 ms to arrive. Any stall longer than that (a GC pause, a busy or CPU-starved
// host, kfake's single request loop) timed the read out; kafka-go logged "the kafka reader got an
// unknown error reading partition N of T at offset O: ... i/o timeout" through the ErrorLogger
// (the coalescer's WARN, every few seconds to minutes on the 2-core dev machine), dropped the
// connection and dialled again. MaxWait = FetchWait + 1 s keeps the broker's wait at 250 ms and
// gives the answer a whole second, so a timeout now means a broker that is really unreachable.
const (
	FetchWait     = 250 * time.Millisecond
	ReaderMaxWait = FetchWait + time.Second
)

// readerConfig holds the fetch settings of every wakepush reader: fetch as soon as one byte is
// there, let the broker wait FetchWait for it (ReaderMaxWait), up to 16 MiB, and no lag polling
// (nobody reads it). A reader that overrides MaxWait must keep it at 1 s more than the wait it
// wants, or below 1 s accept a socket deadline only a quarter longer than the broker's wait.
func readerConfig(brokers []string, d *kafka.Dialer) kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:         brokers,
		Dialer:          d,
		MinBytes:        1,
		MaxBytes:        16 << 20,
		MaxWait:         ReaderMaxWait,
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
		semconv.MessagingOperationName("process"),
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
