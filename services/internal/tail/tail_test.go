package tail

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

func setup(t *testing.T) (*kafkax.Config, *kafkax.Producer) {
	t.Helper()
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(t)}, Partitions: 3, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Deliveries); err != nil {
		t.Fatal(err)
	}
	p, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return cfg, p
}

func produce(t *testing.T, p *kafkax.Producer, from, n int) {
	t.Helper()
	recs := make([]kafkax.Record, n)
	for i := range recs {
		key := fmt.Sprint("dev-", from+i)
		recs[i] = kafkax.Record{Topic: topics.Deliveries, Key: key, Msg: &wakepushv1.Delivery{Id: key}}
	}
	if err := p.Produce(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// WaitCaughtUp returns only after every record acknowledged before it was handled, on every
// partition, also when the handler is slow.
func TestWaitCaughtUp(t *testing.T) {
	cfg, p := setup(t)
	produce(t, p, 0, 30)
	var handled atomic.Int64
	tl, err := New(cfg, Options{Topic: topics.Deliveries, Handle: func(*kafka.Message) {
		time.Sleep(2 * time.Millisecond)
		handled.Add(1)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := tl.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 30 {
		t.Fatalf("caught up after %d records, want 30", n)
	}
	produce(t, p, 30, 10)
	if err := tl.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 40 {
		t.Fatalf("caught up after %d records, want 40", n)
	}
}

// Since starts at the records written within the window; an empty window is caught up at once.
func TestSince(t *testing.T) {
	cfg, p := setup(t)
	produce(t, p, 0, 5)
	time.Sleep(300 * time.Millisecond)
	var handled atomic.Int64
	tl, err := New(cfg, Options{Topic: topics.Deliveries, Since: 150 * time.Millisecond, Handle: func(*kafka.Message) { handled.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := tl.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 0 {
		t.Fatalf("read %d records older than the window", n)
	}
	produce(t, p, 5, 4)
	if err := tl.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 4 {
		t.Fatalf("read %d new records, want 4", n)
	}
}

func run(t *testing.T, tl *Tail) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ctx
}

// writeTo writes n records straight to one partition.
func writeTo(t *testing.T, cfg *kafkax.Config, partition, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", cfg.Brokers[0], topics.Deliveries, partition)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: fmt.Append(nil, "p", partition, "-", i), Value: []byte("v")}
	}
	if _, err := conn.WriteMessages(msgs...); err != nil {
		t.Fatal(err)
	}
}

// Partitions added while the tail runs are found and read from their first offset; CaughtUp
// closes once the records written before Run were handled.
func TestNewPartitions(t *testing.T) {
	cfg, p := setup(t)
	produce(t, p, 0, 6)
	var mu sync.Mutex
	perPartition := map[int]int{}
	tl, err := New(cfg, Options{Topic: topics.Deliveries, PartitionRefresh: 50 * time.Millisecond, Handle: func(msg *kafka.Message) {
		mu.Lock()
		perPartition[msg.Partition]++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := run(t, tl)
	select {
	case <-tl.CaughtUp():
	case <-time.After(20 * time.Second):
		t.Fatal("not caught up")
	}
	mu.Lock()
	n := 0
	for _, c := range perPartition {
		n += c
	}
	mu.Unlock()
	if n != 6 {
		t.Fatalf("caught up after %d records, want 6", n)
	}

	client, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topics.Deliveries, Count: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors[topics.Deliveries]; err != nil {
		t.Fatal(err)
	}
	// Written before the tail notices the partitions: read from their first offset anyway.
	writeTo(t, cfg, 3, 2)
	writeTo(t, cfg, 4, 3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got3, got4 := perPartition[3], perPartition[4]
		mu.Unlock()
		if got3 == 2 && got4 == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new partitions: read %d and %d records, want 2 and 3", got3, got4)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// WaitCaughtUp covers the new partitions.
	writeTo(t, cfg, 4, 1)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := tl.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if perPartition[4] != 4 {
		t.Fatalf("partition 4: %d records after WaitCaughtUp, want 4", perPartition[4])
	}
}

// failingReader fails its ReadMessage after `after` records.
type failingReader struct {
	messageReader
	after int
}

func (r *failingReader) ReadMessage(ctx context.Context) (kafka.Message, error) {
	if r.after == 0 {
		return kafka.Message{}, errors.New("injected read error")
	}
	r.after--
	return r.messageReader.ReadMessage(ctx)
}

// A read error does not stop the partition: it is read again from the next offset, without
// handling a record twice or skipping one.
func TestReadErrorRecovery(t *testing.T) {
	cfg, _ := setup(t)
	writeTo(t, cfg, 0, 10)
	var mu sync.Mutex
	var offsets []int64
	var readers atomic.Int64
	tl, err := New(cfg, Options{Topic: topics.Deliveries, Handle: func(msg *kafka.Message) {
		if msg.Partition == 0 {
			mu.Lock()
			offsets = append(offsets, msg.Offset)
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	real := tl.newReader
	tl.newReader = func(partition int) messageReader {
		r := real(partition)
		if partition != 0 || readers.Add(1) > 3 {
			return r
		}
		return &failingReader{messageReader: r, after: 3} // fails after 3 records, 3 times
	}
	ctx := run(t, tl)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := tl.WaitCaughtUp(wctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tl.CaughtUp():
	case <-wctx.Done():
		t.Fatal("CaughtUp not closed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(offsets) != 10 {
		t.Fatalf("handled offsets %v, want 0..9", offsets)
	}
	for i, off := range offsets {
		if off != int64(i) {
			t.Fatalf("handled offsets %v, want 0..9", offsets)
		}
	}
	if n := readers.Load(); n < 4 {
		t.Fatalf("%d readers, want at least 4", n)
	}
}

// A tail of chosen partitions reads only those, and is caught up by them alone.
func TestPartitions(t *testing.T) {
	cfg, p := setup(t)
	produce(t, p, 0, 60)
	tests := []struct {
		name  string
		parts []int
	}{
		{"one", []int{1}},
		{"two", []int{0, 2}},
		{"all", []int{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[int]int{}
			tl, err := New(cfg, Options{Topic: topics.Deliveries, Partitions: tt.parts, Handle: func(m *kafka.Message) {
				mu.Lock()
				seen[m.Partition]++
				mu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); tl.Run(ctx) }()
			defer func() { cancel(); <-done }()
			wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
			defer wcancel()
			if err := tl.WaitCaughtUp(wctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			total := 0
			for part, n := range seen {
				if !slices.Contains(tt.parts, part) {
					t.Errorf("read %d records of partition %d, not asked for", n, part)
				}
				total += n
			}
			if len(tt.parts) == 3 && total != 60 {
				t.Errorf("read %d records of all partitions, want 60", total)
			}
			for _, part := range tt.parts {
				if seen[part] == 0 {
					t.Errorf("partition %d: nothing read", part)
				}
			}
		})
	}
	// A partition the topic does not have is an error, not a silent empty read.
	tl, err := New(cfg, Options{Topic: topics.Deliveries, Partitions: []int{7}, Handle: func(*kafka.Message) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := tl.Run(ctx); err == nil || !strings.Contains(err.Error(), "no partition 7") {
		t.Fatalf("Run with a missing partition: %v", err)
	}
}
