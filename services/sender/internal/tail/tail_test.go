package tail

import (
	"context"
	"fmt"
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
