// Package tail reads every partition of a topic, or a chosen few, outside any consumer group (a
// reader per partition), hands each record to a handler and tracks how far each partition has been read,
// so a caller can wait until everything written before "now" has been seen (WaitCaughtUp, or
// CaughtUp for the records written before Run started). Partitions added to the topic later are
// found (every PartitionRefresh) and read from their first offset; a partition whose reader
// fails is re-read from its next offset after a backoff, until ctx ends.
// The sender uses it for the compacted registrations topic (from the first offset, the partitions
// its instance owns) and for recent deliveries (from a point in time); ingest's devices set for the registrations topic.
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
	// PartitionRefresh is how often Run looks for partitions added to the topic;
	// 0 means DefaultPartitionRefresh.
	PartitionRefresh time.Duration
	// Partitions, when set, are the only partitions read (no others are looked for): the
	// sender's registration table follows only the partitions its instance owns.
	Partitions []int
}

// DefaultPartitionRefresh is the default Options.PartitionRefresh.
const DefaultPartitionRefresh = 30 * time.Second

// messageReader is the part of *kafka.Reader a Tail uses (a seam for tests).
type messageReader interface {
	SetOffset(offset int64) error
	ReadMessage(ctx context.Context) (kafka.Message, error)
	Close() error
}

// Tail follows one topic.
type Tail struct {
	cfg    *kafkax.Config
	opts   Options
	client *kafka.Client
	dialer *kafka.Dialer

	started  chan struct{} // closed once partitions and start offsets are known
	caughtUp chan struct{} // closed once the records written before Run started were handled

	newReader func(partition int) messageReader

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
	if opts.PartitionRefresh <= 0 {
		opts.PartitionRefresh = DefaultPartitionRefresh
	}
	t := &Tail{
		cfg: cfg, opts: opts, client: client, dialer: dialer,
		started:  make(chan struct{}),
		caughtUp: make(chan struct{}),
		next:     map[int]int64{},
		changed:  make(chan struct{}),
	}
	t.newReader = t.kafkaReader
	return t, nil
}

// CaughtUp is closed once every partition the topic had when Run started was read up to the
// end offset it had then (everything acknowledged before Run started was handled).
func (t *Tail) CaughtUp() <-chan struct{} { return t.caughtUp }

// Run reads until ctx ends. It returns early only if the topic's partitions or start offsets
// cannot be found (retrying until ctx ends while the broker is unreachable); it returns nil
// when ctx ends after reading started.
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
	defer wg.Wait()
	for p := range starts {
		wg.Go(func() { t.read(ctx, p) })
	}
	wg.Go(func() { t.signalCaughtUp(ctx) })
	if len(t.opts.Partitions) > 0 {
		<-ctx.Done()
		return nil
	}
	t.watchPartitions(ctx, &wg)
	return nil
}

// signalCaughtUp closes caughtUp once the partitions reached the end offsets they had at start.
func (t *Tail) signalCaughtUp(ctx context.Context) {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 3*time.Second) {
		err := t.WaitCaughtUp(ctx)
		if err == nil {
			close(t.caughtUp)
			return
		}
		if ctx.Err() != nil {
			return
		}
		t.opts.Log.Warn("tail: initial catch-up", "topic", t.opts.Topic, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// watchPartitions looks for partitions added to the topic every PartitionRefresh until ctx ends
// and starts reading each new one at its first offset (all its records were written after Run
// started).
func (t *Tail) watchPartitions(ctx context.Context, wg *sync.WaitGroup) {
	tick := time.NewTicker(t.opts.PartitionRefresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		parts, err := t.partitions(mctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				t.opts.Log.Warn("tail: list partitions", "topic", t.opts.Topic, "err", err)
			}
			continue
		}
		t.mu.Lock()
		var added []int
		for _, p := range parts {
			if _, ok := t.next[p]; !ok {
				added = append(added, p)
			}
		}
		t.mu.Unlock()
		starts := map[int]int64{}
		for _, p := range added {
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			off, err := t.startOffset(mctx, p, 0)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					t.opts.Log.Warn("tail: find start offset of new partition", "topic", t.opts.Topic, "partition", p, "err", err)
				}
				continue // tried again on the next refresh
			}
			starts[p] = off
		}
		added = added[:0]
		t.mu.Lock()
		for p, off := range starts {
			t.next[p] = off
			added = append(added, p)
		}
		if len(added) > 0 {
			// WaitCaughtUp callers waiting on progress must look at the new partitions too.
			close(t.changed)
			t.changed = make(chan struct{})
		}
		t.mu.Unlock()
		if len(added) > 0 {
			t.opts.Log.Info("tail: new partitions", "topic", t.opts.Topic, "partitions", added)
		}
		for _, p := range added {
			wg.Go(func() { t.read(ctx, p) })
		}
	}
}

func (t *Tail) kafkaReader(partition int) messageReader {
	return kafka.NewReader(kafkax.PartitionReaderConfig(t.cfg.Brokers, t.dialer, t.opts.Topic, partition))
}

// read follows one partition from its next offset until ctx ends. After a read error it waits
// (with backoff) and starts a new reader at the next offset not handled yet.
func (t *Tail) read(ctx context.Context, partition int) {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		t.mu.Lock()
		offset := t.next[partition]
		t.mu.Unlock()
		if t.readFrom(ctx, partition, offset) {
			backoff = minBackoff // it made progress before failing
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// readFrom reads one partition from offset with one reader until an error or ctx ends, and
// reports whether it handled any record.
func (t *Tail) readFrom(ctx context.Context, partition int, offset int64) (progressed bool) {
	r := t.newReader(partition)
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		t.opts.Log.Error("tail: set offset, retrying", "topic", t.opts.Topic, "partition", partition, "offset", offset, "err", err)
		return false
	}
	for {
		msg, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				t.opts.Log.Warn("tail: read failed, retrying", "topic", t.opts.Topic, "partition", partition, "offset", offset, "err", err)
			}
			return progressed
		}
		t.opts.Handle(&msg)
		t.advance(partition, msg.Offset+1)
		offset = msg.Offset + 1
		progressed = true
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
	if len(t.opts.Partitions) > 0 {
		for _, p := range t.opts.Partitions {
			if !slices.Contains(parts, p) {
				return nil, fmt.Errorf("topic %s has no partition %d", t.opts.Topic, p)
			}
		}
		parts = t.opts.Partitions
	}
	starts := make(map[int]int64, len(parts))
	for _, p := range parts {
		if starts[p], err = t.startOffset(ctx, p, t.opts.Since); err != nil {
			return nil, err
		}
	}
	return starts, nil
}

// startOffset asks the partition's leader for the absolute offset to start at. (kafka-go's
// Client.ListOffsets cannot tell first from last offsets in the answer, so the per-partition
// connection calls are used.)
func (t *Tail) startOffset(ctx context.Context, partition int, since time.Duration) (int64, error) {
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
	if since <= 0 {
		return first, nil
	}
	// The first offset written at or after the cut-off; none (-1) means the end.
	at, err := conn.ReadOffset(time.Now().Add(-since))
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
