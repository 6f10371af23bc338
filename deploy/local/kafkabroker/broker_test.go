package kafkabroker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
)

func createTopic(t *testing.T, addr, topic string, partitions int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("CreateTopics: %v", err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
}

func newWriter(addr, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		Balancer:     &kafka.Murmur2Balancer{},
		MaxAttempts:  3,
	}
}

func produce(t *testing.T, addr, topic string, from, n int) {
	t.Helper()
	w := newWriter(addr, topic)
	defer w.Close()
	msgs := make([]kafka.Message, 0, n)
	for i := from; i < from+n; i++ {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}
}

// consume reads n messages with a consumer group, committing each, and
// returns their values sorted.
func consume(t *testing.T, addr, topic, group string, n int) []string {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     []string{addr},
		Topic:       topic,
		GroupID:     group,
		StartOffset: kafka.FirstOffset,
		MaxWait:     50 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("FetchMessage after %d/%d messages: %v", len(got), n, err)
		}
		if want := "v" + string(m.Key[1:]); string(m.Value) != want {
			t.Errorf("message key %s has value %s, want %s", m.Key, m.Value, want)
		}
		got = append(got, string(m.Value))
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("CommitMessages: %v", err)
		}
	}
	sort.Strings(got)
	return got
}

func values(from, n int) []string {
	var v []string
	for i := from; i < from+n; i++ {
		v = append(v, fmt.Sprintf("v%d", i))
	}
	sort.Strings(v)
	return v
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProduceConsume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dataDir    bool
		syncWrites bool
		partitions int
	}{
		{name: "memory/1 partition", partitions: 1},
		{name: "memory/4 partitions", partitions: 4},
		{name: "datadir/sync writes", dataDir: true, syncWrites: true, partitions: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := kafkabroker.Options{Addr: "127.0.0.1:0", SyncWrites: tc.syncWrites}
			if tc.dataDir {
				opts.DataDir = t.TempDir()
			}
			b, err := kafkabroker.Start(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Close)
			createTopic(t, b.Addr(), "wake", tc.partitions)
			produce(t, b.Addr(), "wake", 0, 20)
			if got, want := consume(t, b.Addr(), "wake", "g", 20), values(0, 20); !equal(got, want) {
				t.Fatalf("consumed %v, want %v", got, want)
			}
		})
	}
}

func TestAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		addr    string
		wantErr bool
	}{
		{name: "empty picks a port", addr: ""},
		{name: "port zero", addr: "127.0.0.1:0"},
		{name: "empty host", addr: ":0"},
		{name: "no port", addr: "127.0.0.1", wantErr: true},
		{name: "bad port", addr: "127.0.0.1:x", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := kafkabroker.Start(kafkabroker.Options{Addr: tc.addr})
			if tc.wantErr {
				if err == nil {
					b.Close()
					t.Fatal("Start succeeded, want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			host, port, err := net.SplitHostPort(b.Addr())
			if err != nil || host != "127.0.0.1" || port == "0" {
				t.Fatalf("Addr() = %q, want 127.0.0.1:<port>", b.Addr())
			}
			c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}

func TestSyncWritesNeedsDataDir(t *testing.T) {
	t.Parallel()
	if b, err := kafkabroker.Start(kafkabroker.Options{SyncWrites: true}); err == nil {
		b.Close()
		t.Fatal("Start succeeded, want error")
	}
}

func TestNoAutoTopicCreation(t *testing.T) {
	t.Parallel()
	b, err := kafkabroker.Start(kafkabroker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w := newWriter(b.Addr(), "missing")
	w.MaxAttempts = 1
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = w.WriteMessages(ctx, kafka.Message{Value: []byte("x")})
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("write to a missing topic: %v, want %v", err, kafka.UnknownTopicOrPartition)
	}
}

// TestPersistence restarts the broker on the same data dir: records and the
// consumer group's committed offsets survive.
func TestPersistence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() *kafkabroker.Broker {
		t.Helper()
		b, err := kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0", DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}

	b := start()
	createTopic(t, b.Addr(), "events", 3)
	produce(t, b.Addr(), "events", 0, 10)
	b.Close()

	b = start()
	if got, want := consume(t, b.Addr(), "events", "g", 10), values(0, 10); !equal(got, want) {
		t.Fatalf("after restart consumed %v, want %v", got, want)
	}
	b.Close()

	b = start()
	// The topic still exists (no auto-creation) and the group resumes after
	// its committed offsets.
	produce(t, b.Addr(), "events", 10, 2)
	if got, want := consume(t, b.Addr(), "events", "g", 2), values(10, 2); !equal(got, want) {
		t.Fatalf("after second restart consumed %v, want %v", got, want)
	}
	// A new group sees everything.
	if got, want := consume(t, b.Addr(), "events", "other", 12), values(0, 12); !equal(got, want) {
		t.Fatalf("new group consumed %v, want %v", got, want)
	}
}
