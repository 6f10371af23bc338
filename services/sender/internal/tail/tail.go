// Package tail reads every partition of a topic outside any consumer group (a reader per
// partition), hands each record to a handler and tracks how far each partition has been read,
// so a caller can wait until everything written before "now" has been seen (WaitCaughtUp).
// The sender uses it for the compacted registrations topic (from the first offset) and for
// recent deliveries (from a point in time).
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// Options configure a Tail.
type Options struct {
	Topic string
	// Since, when > 0, starts each partition at the first record written at or after
	// now - Since; 0 starts at the first offset.
	Since time.Duration
	// Handle is called for each record, concurrently across partitions and in offset order
	// within one.
	Handle func(msg *kafka.Message)
	Log    *slog.Logger
}

// Tail follows one topic.
type Tail struct {
	cfg    *kafkax.Config
	opts   Options
	client *kafka.Client
	dialer *kafka.Dialer

	started chan struct{} // closed once partitions and start offsets are known

	mu      sync.Mutex
	next    map[int]int64 // partition -> next offset to read
	changed chan struct{} // closed and replaced on every progress
}

// New returns a Tail; Run starts it.
func New(cfg *kafkax.Config, opts Options) (*Tail, error) {
	client, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Tail{
		cfg: cfg, opts: opts, client: client, dialer: dialer,
		started: make(chan struct{}),
		next:    map[int]int64{},
		changed: make(chan struct{}),
	}, nil
}

// Run reads until ctx ends. It returns early only if the topic's partitions or start offsets
// cannot be found (retrying until ctx ends while the broker is unreachable).
func (t *Tail) Run(ctx context.Context) error {
	defer t.closeClient()
	starts, err := t.startOffsets(ctx)
	if err != nil {
		return err
	}
	t.mu.Lock()
	for p, off := range starts {
		t.next[p] = off
	}
	t.mu.Unlock()
	close(t.started)

	var wg sync.WaitGroup
	for p, off := range starts {
		wg.Go(func() { t.read(ctx, p, off) })
	}
	wg.Wait()
	return nil
}

func (t *Tail) read(ctx context.Context, partition int, offset int64) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:        t.cfg.Brokers,
		Topic:          t.opts.Topic,
		Partition:      partition,
		Dialer:         t.dialer,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        250 * time.Millisecond,
		ReadBackoffMin: 10 * time.Millisecond,
		ReadBackoffMax: 250 * time.Millisecond,
		QueueCapacity:  1000,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		t.opts.Log.Error("tail: set offset", "topic", t.opts.Topic, "partition", partition, "err", err)
		return
	}
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.opts.Log.Error("tail: read", "topic", t.opts.Topic, "partition", partition, "err", err)
			}
			return
		}
		t.opts.Handle(&msg)
		t.advance(partition, msg.Offset+1)
	}
}

func (t *Tail) advance(partition int, next int64) {
	t.mu.Lock()
	if next > t.next[partition] {
		t.next[partition] = next
	}
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

// startOffsets finds the partitions and where to start reading each.
func (t *Tail) startOffsets(ctx context.Context) (map[int]int64, error) {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 3*time.Second) {
		starts, err := t.tryStartOffsets(ctx)
		if err == nil {
			return starts, nil
		}
		t.opts.Log.Warn("tail: find start offsets", "topic", t.opts.Topic, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("tail %s: %w (last error: %v)", t.opts.Topic, ctx.Err(), err)
		case <-time.After(backoff):
		}
	}
}

func (t *Tail) tryStartOffsets(ctx context.Context) (map[int]int64, error) {
	parts, err := t.partitions(ctx)
	if err != nil {
		return nil, err
	}
	starts := make(map[int]int64, len(parts))
	for _, p := range parts {
		if starts[p], err = t.startOffset(ctx, p); err != nil {
			return nil, err
		}
	}
	return starts, nil
}

// startOffset asks the partition's leader for the absolute offset to start at. (kafka-go's
// Client.ListOffsets cannot tell first from last offsets in the answer, so the per-partition
// connection calls are used.)
func (t *Tail) startOffset(ctx context.Context, partition int) (int64, error) {
	var conn *kafka.Conn
	var err error
	for _, b := range t.cfg.Brokers {
		if conn, err = t.dialer.DialLeader(ctx, "tcp", b, t.opts.Topic, partition); err == nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("dial leader of %s/%d: %w", t.opts.Topic, partition, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return 0, fmt.Errorf("offsets of %s/%d: %w", t.opts.Topic, partition, err)
	}
	if t.opts.Since <= 0 {
		return first, nil
	}
	// The first offset written at or after the cut-off; none (-1) means the end.
	at, err := conn.ReadOffset(time.Now().Add(-t.opts.Since))
	if err != nil {
		return 0, fmt.Errorf("offset by time of %s/%d: %w", t.opts.Topic, partition, err)
	}
	if at < 0 || at > last {
		at = last
	}
	return max(at, first), nil
}

func (t *Tail) partitions(ctx context.Context) ([]int, error) {
	meta, err := t.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{t.opts.Topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", t.opts.Topic, err)
	}
	if len(meta.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s: %d topics in answer", t.opts.Topic, len(meta.Topics))
	}
	if err := meta.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", t.opts.Topic, err)
	}
	var parts []int
	for _, p := range meta.Topics[0].Partitions {
		parts = append(parts, p.ID)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", t.opts.Topic)
	}
	slices.Sort(parts)
	return parts, nil
}

func (t *Tail) listOffsets(ctx context.Context, reqs []kafka.OffsetRequest) ([]kafka.PartitionOffsets, error) {
	resp, err := t.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{t.opts.Topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", t.opts.Topic, err)
	}
	offs := resp.Topics[t.opts.Topic]
	var errs []error
	for _, po := range offs {
		if po.Error != nil {
			errs = append(errs, fmt.Errorf("list offsets of %s/%d: %w", t.opts.Topic, po.Partition, po.Error))
		}
	}
	return offs, errors.Join(errs...)
}

// WaitCaughtUp waits until every partition has been read up to its high watermark (the answer
// to a "latest offset" query, which kafka-go's Client.ListOffsets reports correctly) as of the
// call (everything acknowledged before it), or ctx ends. It waits for Run to start first.
func (t *Tail) WaitCaughtUp(ctx context.Context) error {
	select {
	case <-t.started:
	case <-ctx.Done():
		return fmt.Errorf("tail %s not started: %w", t.opts.Topic, ctx.Err())
	}
	t.mu.Lock()
	reqs := make([]kafka.OffsetRequest, 0, len(t.next))
	for p := range t.next {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	t.mu.Unlock()
	offs, err := t.listOffsets(ctx, reqs)
	if err != nil {
		return err
	}
	for {
		t.mu.Lock()
		behind := false
		for _, po := range offs {
			if t.next[po.Partition] < po.LastOffset {
				behind = true
				break
			}
		}
		changed := t.changed
		t.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("tail %s: catching up: %w", t.opts.Topic, ctx.Err())
		}
	}
}

// closeClient releases the admin client's connections (kafka-go keeps a metadata goroutine per
// transport until then).
func (t *Tail) closeClient() {
	if tr, ok := t.client.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
}
