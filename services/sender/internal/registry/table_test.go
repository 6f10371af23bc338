package registry

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// partitionedTopic writes n devices' registrations to a 4-partition push.registrations and
// returns the config and which partition each device landed in.
func partitionedTopic(t *testing.T, n int) (*kafkax.Config, map[string]int) {
	t.Helper()
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(t)}, Partitions: 4, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Registrations); err != nil {
		t.Fatal(err)
	}
	prod, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	recs := make([]kafkax.Record, n)
	for i := range recs {
		dev := fmt.Sprintf("%032x", i+1)
		recs[i] = kafkax.Record{Topic: topics.Registrations, Key: dev, Msg: &wakepushv1.Registration{
			Id: records.NewID(), CreatedAt: records.Timestamp(time.Now()), DeviceId: dev, App: "im.x",
			Platform: wakepushv1.Platform_PLATFORM_APNS, Token: fmt.Sprintf("%064x", i+1), State: active}}
	}
	if err := prod.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	// Where each device went: read every partition once with a table that holds them all.
	all := New(cfg, slog.New(slog.DiscardHandler), Options{})
	all.Assign([]int{0, 1, 2, 3})
	stop := runTable(t, all)
	defer stop()
	if err := all.WaitLoaded(ctx, []int{0, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	where := map[string]int{}
	for i := range n {
		dev := fmt.Sprintf("%032x", i+1)
		for p := range 4 {
			if _, ok := all.Get(p, dev); ok {
				where[dev] = p
			}
		}
	}
	if len(where) != n {
		t.Fatalf("a table of every partition found %d of %d devices", len(where), n)
	}
	return cfg, where
}

func runTable(t *testing.T, tb *Table) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tb.Run(ctx) }()
	return func() { cancel(); <-done }
}

// A table holds only the partitions it is given: their devices, and none of the others'.
func TestTableHoldsAssignedPartitions(t *testing.T) {
	const n = 400
	cfg, where := partitionedTopic(t, n)
	tests := []struct {
		name     string
		assigned []int
	}{
		{"one", []int{2}},
		{"two", []int{0, 3}},
		{"all", []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := New(cfg, slog.New(slog.DiscardHandler), Options{Retain: time.Hour})
			tb.Assign(tt.assigned)
			defer runTable(t, tb)()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := tb.WaitLoaded(ctx, tt.assigned); err != nil {
				t.Fatal(err)
			}
			want := 0
			for dev, p := range where {
				d, ok := tb.Get(p, dev)
				owned := slices.Contains(tt.assigned, p)
				if owned {
					want++
				}
				if ok != owned {
					t.Fatalf("device of partition %d: known %v, want %v", p, ok, owned)
				}
				if ok && (!d.Active() || d.Token != fmt.Sprintf("%064x", mustIndex(t, dev))) {
					t.Fatalf("device of partition %d: %+v", p, d)
				}
			}
			if tb.Len() != want {
				t.Errorf("Len %d, want the %d devices of the assigned partitions", tb.Len(), want)
			}
			if got := tb.Partitions(); !slices.Equal(got, tt.assigned) {
				t.Errorf("Partitions %v, want %v", got, tt.assigned)
			}
		})
	}
}

func mustIndex(t *testing.T, dev string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(dev, "%x", &i); err != nil {
		t.Fatal(err)
	}
	return i
}

// A wake of a partition the table does not hold makes it load that partition alone; a revoked
// partition is kept for Retain and is not loaded again when it comes back; after Retain it goes.
func TestTableRebalance(t *testing.T) {
	const n = 200
	cfg, where := partitionedTopic(t, n)
	var onTwo string
	for dev, p := range where {
		if p == 2 {
			onTwo = dev
			break
		}
	}
	tb := New(cfg, slog.New(slog.DiscardHandler), Options{Retain: 2 * time.Second})
	tb.Assign([]int{0, 1})
	defer runTable(t, tb)()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tb.WaitLoaded(ctx, []int{0, 1}); err != nil {
		t.Fatal(err)
	}

	// Not held: unknown until waited for, then loaded on demand, alone.
	if _, ok := tb.Get(2, onTwo); ok {
		t.Fatal("a device of a partition the table was not given is known")
	}
	if err := tb.WaitCaughtUp(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.Get(2, onTwo); !ok {
		t.Fatal("after WaitCaughtUp the partition's device is still unknown")
	}
	if got := tb.Partitions(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("Partitions %v after loading 2 on demand", got)
	}

	// Revoked and given back within Retain: the same store, not loaded again.
	tb.Revoke([]int{0, 1})
	before, _ := tb.held(0)
	tb.Assign([]int{0, 1})
	after, _ := tb.held(0)
	if before != after {
		t.Fatal("a partition given back within Retain was loaded again")
	}

	// Partition 2 was never assigned (held since the on-demand load) and 1 is revoked now:
	// after Retain both go, 0 stays.
	tb.Revoke([]int{1})
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Equal(tb.Partitions(), []int{0}) {
		if time.Now().After(deadline) {
			t.Fatalf("Partitions %v long after Retain, want [0]", tb.Partitions())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := tb.Get(2, onTwo); ok {
		t.Error("a dropped partition's device is still known")
	}
	want := 0
	for _, p := range where {
		if p == 0 {
			want++
		}
	}
	if tb.Len() != want {
		t.Errorf("Len %d, want partition 0's %d devices", tb.Len(), want)
	}
}

// With Retain 0 a revoked partition is dropped at once.
func TestTableRetainZero(t *testing.T) {
	tb := New(&kafkax.Config{Brokers: []string{"127.0.0.1:1"}}, slog.New(slog.DiscardHandler), Options{})
	tb.Assign([]int{0, 1})
	tb.Revoke([]int{1})
	if got := tb.Partitions(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Partitions %v after revoking 1 with Retain 0, want [0]", got)
	}
}

// A partition dropped before its load finished (revoked past Retain while loading) releases
// whoever waits for it: WaitLoaded returns (readiness), and WaitCaughtUp holds it again.
func TestTableDroppedWhileLoading(t *testing.T) {
	// An unreachable broker: the partition never loads.
	tb := New(&kafkax.Config{Brokers: []string{"127.0.0.1:1"}}, slog.New(slog.DiscardHandler), Options{Retain: time.Second})
	tb.Assign([]int{0})
	defer runTable(t, tb)()
	waited := make(chan error, 1)
	go func() { waited <- tb.WaitLoaded(context.Background(), []int{0}) }()
	tb.Revoke([]int{0})
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitLoaded still waiting long after the partition was dropped")
	}
	if got := tb.Partitions(); len(got) != 0 {
		t.Fatalf("Partitions %v after the drop", got)
	}
	// WaitCaughtUp holds it again (and would load it); here it can only time out.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := tb.WaitCaughtUp(ctx, 0); err == nil {
		t.Fatal("WaitCaughtUp of a partition that cannot load returned nil")
	}
	if got := tb.Partitions(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Partitions %v after WaitCaughtUp, want [0]", got)
	}
}
