package kafkax

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// GroupReaderOptions configure a GroupReader.
type GroupReaderOptions struct {
	// Group is the consumer group id.
	Group string
	// Topic is the one topic the group consumes.
	Topic string
	// SessionTimeout is how long the coordinator keeps a member that stopped heartbeating
	// (0: 30 s, kafka-go Reader's default). Members heartbeat every SessionTimeout/10.
	SessionTimeout time.Duration
	// OnAssign is called with the partitions of each new generation (sorted, possibly none),
	// before any of their records is returned by FetchMessage. It may block (e.g. start loading
	// state) but should be quick: the generation's partition readers start when it returns
	// (heartbeats go on meanwhile), and Assigned reports them from then on. It must not call
	// Close.
	OnAssign func(generation int32, partitions []int)
	// OnRevoke is called once a generation has ended and its partition readers have stopped,
	// with the partitions it had; also for the last generation when the reader is closed. It is
	// always called before the next generation's OnAssign. It must not call Close.
	OnRevoke func(generation int32, partitions []int)
	// Log receives the group's events (nil: slog.Default()). Records' keys and values are never
	// logged.
	Log *slog.Logger
}

// fetchedBuffer is how many fetched records wait for FetchMessage, shared by the partitions
// (each partition reader also buffers QueueCapacity records of its own).
const fetchedBuffer = 256

// GroupReader is a consumer group member of one topic that, unlike kafka-go's *kafka.Reader,
// tells its user which partitions it owns (OnAssign, OnRevoke, Assigned) and only ever returns
// records of partitions the current generation owns. It never commits by itself
// (CommitMessages).
//
// It runs a kafka.ConsumerGroup; each generation starts one partition reader per assigned
// partition (Generation.Start) at the group's committed offset, or at the oldest record for a
// partition without one. The readers end with the generation (rebalance, lost coordinator,
// Close); records they fetched that FetchMessage has not returned yet are then dropped, and the
// partitions' next owner reads them again from the committed offsets.
type GroupReader struct {
	group    string
	topic    string
	brokers  []string
	dialer   *kafka.Dialer
	log      *slog.Logger
	onAssign func(int32, []int)
	onRevoke func(int32, []int)

	sticky  *StickyBalancer
	cg      *kafka.ConsumerGroup
	fetched chan fetched
	// current is the generation whose records FetchMessage returns and through which
	// CommitMessages commits; nil between generations and after Close.
	current atomic.Pointer[generation]

	cancel    context.CancelFunc
	closed    chan struct{} // closed by Close
	done      chan struct{} // closed when run has returned
	closeOnce sync.Once
	closeErr  error
}

// generation is one generation of the group as this member sees it.
type generation struct {
	gen        *kafka.Generation
	partitions []int // sorted
	owned      map[int]bool
}

// fetched is a record read by a partition reader of generation gen.
type fetched struct {
	gen *generation
	msg kafka.Message
}

// NewGroupReader returns a reader that joins opts.Group in the background (like kafka.NewReader):
// FetchMessage waits until a generation has assigned partitions and they have records.
func NewGroupReader(cfg *Config, opts GroupReaderOptions) (*GroupReader, error) {
	if opts.Group == "" || opts.Topic == "" {
		return nil, fmt.Errorf("group reader: group (%q) and topic (%q) are required", opts.Group, opts.Topic)
	}
	d, err := cfg.Dialer()
	if err != nil {
		return nil, fmt.Errorf("group reader for group %s: %w", opts.Group, err)
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	session := opts.SessionTimeout
	if session <= 0 {
		session = 30 * time.Second
	}
	log = log.With("group", opts.Group, "topic", opts.Topic)
	sticky := &StickyBalancer{}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    opts.Group,
		Brokers:               cfg.Brokers,
		Dialer:                d,
		Topics:                []string{opts.Topic},
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        session,
		HeartbeatInterval:     session / 10,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		// Sticky first (members keep their partitions across rebalances); range when a member
		// does not offer it (an older version during a rolling upgrade).
		GroupBalancers: []kafka.GroupBalancer{sticky, kafka.RangeGroupBalancer{}},
		Logger:         kafka.LoggerFunc(func(f string, a ...any) { log.Debug(fmt.Sprintf(f, a...), "component", "kafka-group") }),
		ErrorLogger:    kafka.LoggerFunc(func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...), "component", "kafka-group") }),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", opts.Group, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &GroupReader{
		group:    opts.Group,
		topic:    opts.Topic,
		brokers:  cfg.Brokers,
		dialer:   d,
		log:      log,
		onAssign: opts.OnAssign,
		onRevoke: opts.OnRevoke,
		sticky:   sticky,
		cg:       cg,
		fetched:  make(chan fetched, fetchedBuffer),
		cancel:   cancel,
		closed:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	go r.run(ctx)
	return r, nil
}

// run takes the group's generations one after the other until the reader is closed.
func (r *GroupReader) run(ctx context.Context) {
	defer close(r.done)
	for {
		gen, err := r.cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			// Join/sync errors: the group retries by itself (after JoinGroupBackoff unless
			// a rebalance is in progress).
			r.log.Warn("consumer group generation failed", "err", err)
			continue
		}
		r.runGeneration(gen)
	}
}

// runGeneration runs one generation: OnAssign, one partition reader per assigned partition
// until the generation ends, OnRevoke. kafka-go's group does not hand out the next generation
// before this one's Start functions have all returned, so generations never overlap.
func (r *GroupReader) runGeneration(gen *kafka.Generation) {
	assigned := gen.Assignments[r.topic]
	g := &generation{gen: gen, owned: make(map[int]bool, len(assigned))}
	offsets := make(map[int]int64, len(assigned))
	for _, a := range assigned {
		g.partitions = append(g.partitions, a.ID)
		g.owned[a.ID] = true
		offsets[a.ID] = a.Offset
	}
	slices.Sort(g.partitions)
	r.sticky.SetOwned(r.topic, g.partitions) // offered to the leader at the next join
	// A partition's offset is the group's committed offset, or kafka.FirstOffset (-2) where
	// the group has none.
	r.log.Info("joined consumer group", "generation", gen.ID, "member_id", gen.MemberID, "partitions", g.partitions, "offsets", offsets)
	if r.onAssign != nil {
		r.onAssign(gen.ID, slices.Clone(g.partitions))
	}
	r.current.Store(g)

	var wg sync.WaitGroup
	// The generation ends for all its functions at once (genCtx): stop returning its records
	// at that moment rather than once every partition reader has closed.
	wg.Add(1)
	gen.Start(func(genCtx context.Context) {
		defer wg.Done()
		<-genCtx.Done()
		r.current.CompareAndSwap(g, nil)
	})
	for _, p := range g.partitions {
		wg.Add(1)
		gen.Start(func(genCtx context.Context) {
			defer wg.Done()
			r.readPartition(genCtx, g, p, offsets[p])
		})
	}
	wg.Wait()
	r.current.CompareAndSwap(g, nil)
	r.log.Info("consumer group generation ended", "generation", gen.ID, "partitions", g.partitions)
	if r.onRevoke != nil {
		r.onRevoke(gen.ID, slices.Clone(g.partitions))
	}
}

// readPartition reads one partition of generation g from offset (a committed offset, or
// kafka.FirstOffset for a partition the group has none of) into r.fetched until the generation
// ends.
func (r *GroupReader) readPartition(genCtx context.Context, g *generation, partition int, offset int64) {
	rc := PartitionReaderConfig(r.brokers, r.dialer, r.topic, partition)
	rc.ErrorLogger = kafka.LoggerFunc(func(f string, a ...any) {
		level := slog.LevelWarn
		if genCtx.Err() != nil {
			level = slog.LevelDebug // closing: a dial or fetch in flight was cancelled
		}
		r.log.Log(context.Background(), level, fmt.Sprintf(f, a...), "component", "kafka-reader", "partition", partition)
	})
	rd := kafka.NewReader(rc)
	defer func() {
		if err := rd.Close(); err != nil {
			r.log.Warn("close partition reader", "partition", partition, "err", err)
		}
	}()
	// SetOffset takes kafka.FirstOffset and kafka.LastOffset as well as absolute offsets.
	if err := rd.SetOffset(offset); err != nil {
		r.log.Error("set partition reader offset; ending the generation", "partition", partition, "offset", offset, "err", err)
		return
	}
	for {
		msg, err := rd.FetchMessage(genCtx)
		if err != nil {
			if genCtx.Err() != nil {
				return
			}
			// The reader retries by itself; it reports errors it considers the caller's
			// (a Kafka error code, an unknown codec) and then goes on.
			r.log.Warn("fetch from partition", "partition", partition, "err", err)
			select {
			case <-genCtx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		select {
		case r.fetched <- fetched{gen: g, msg: msg}:
		case <-genCtx.Done():
			return
		}
	}
}

// FetchMessage returns the next record of a partition owned in the current generation, waiting
// for one until ctx ends. Records fetched in a generation that has ended are dropped, never
// returned (the partitions' next owner reads them again). After Close it returns io.EOF.
func (r *GroupReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		select {
		case <-r.closed:
			return kafka.Message{}, io.EOF
		default:
		}
		select {
		case <-r.closed:
			return kafka.Message{}, io.EOF
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case f := <-r.fetched:
			if f.gen == r.current.Load() {
				return f.msg, nil
			}
		}
	}
}

// CommitMessages commits, per partition, the highest msg.Offset+1 of msgs through the current
// generation (Generation.CommitOffsets; it does not itself honour ctx once started, the
// coordinator connection has its own timeout). Records of partitions the current generation
// does not own — all of them between generations and after Close — are skipped without error:
// the partition's new owner reads them again. It returns an error when the commit fails; when
// the generation has ended meanwhile, that error also matches kafka.ErrGenerationEnded (the
// records will be read again, so callers may treat it like a skip).
func (r *GroupReader) CommitMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit offsets of %s for group %s: %w", r.topic, r.group, err)
	}
	g := r.current.Load()
	offsets := make(map[int]int64)
	for _, m := range msgs {
		if m.Topic != r.topic {
			return fmt.Errorf("commit offsets for group %s: record of topic %q (partition %d, offset %d), the reader's topic is %s",
				r.group, m.Topic, m.Partition, m.Offset, r.topic)
		}
		if g == nil || !g.owned[m.Partition] {
			continue
		}
		if o, ok := offsets[m.Partition]; !ok || m.Offset+1 > o {
			offsets[m.Partition] = m.Offset + 1
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	if err := g.gen.CommitOffsets(map[string]map[int]int64{r.topic: offsets}); err != nil {
		if r.current.Load() != g {
			return fmt.Errorf("commit offsets %v of %s for group %s in generation %d: %w (%w)", offsets, r.topic, r.group, g.gen.ID, err, kafka.ErrGenerationEnded)
		}
		return fmt.Errorf("commit offsets %v of %s for group %s in generation %d: %w", offsets, r.topic, r.group, g.gen.ID, err)
	}
	return nil
}

// Assigned returns the current generation's partitions (sorted) once its OnAssign has
// returned; none between generations and after Close.
func (r *GroupReader) Assigned() []int {
	g := r.current.Load()
	if g == nil {
		return nil
	}
	return slices.Clone(g.partitions)
}

// Close ends the current generation, waits for its partition readers to stop (and OnRevoke to
// return) and leaves the group, so that another member takes the partitions over at once
// instead of after the session timeout. FetchMessage then returns io.EOF. It is idempotent.
//
// kafka-go's group cannot interrupt a join in flight: closing while this member is joining
// waits for the join to end (at most the rebalance timeout, 30 s).
func (r *GroupReader) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.cancel()
		if err := r.cg.Close(); err != nil {
			r.closeErr = fmt.Errorf("close consumer group %s: %w", r.group, err)
		}
		<-r.done
		r.current.Store(nil)
		r.log.Info("left consumer group")
	})
	return r.closeErr
}
