package kafkatopic

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestCountReadLag on a real (in-process kfake) broker: a topic of 3 partitions with 7 records,
// then a group that has committed nothing and one that has committed everything.
func TestCountReadLag(t *testing.T) {
	addr := stacktest.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const topic, n = "t", 7
	c := &kafka.Client{Addr: kafka.TCP(addr)}
	if _, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for i := range n {
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := Count(ctx, addr, topic); err != nil || got != n {
		t.Fatalf("Count = %d, %v; want %d", got, err, n)
	}
	seen := map[string]bool{}
	if err := Read(ctx, addr, topic, func(m kafka.Message) { seen[string(m.Value)] = true }); err != nil || len(seen) != n {
		t.Fatalf("Read saw %d distinct records (%v), want %d", len(seen), err, n)
	}
	kc := Open(addr)
	defer kc.Close()
	if lag, err := kc.Lag(ctx, "g", topic); err != nil || lag != n {
		t.Fatalf("Lag of a group without commits = %d, %v; want %d", lag, err, n)
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: "g", Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for range n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if lag, err := kc.Lag(ctx, "g", topic); err != nil || lag != 0 {
		t.Fatalf("Lag after committing everything = %d, %v; want 0", lag, err)
	}
	if _, err := Count(ctx, addr, "missing"); err == nil {
		t.Fatal("Count of a missing topic: no error")
	}
}
