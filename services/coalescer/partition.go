package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// partitionRunner owns one partition of push.events: its engine, its reader, its commits.
//
// Loop: wait for records, a device timer or the commit tick; handle a batch of records at one
// "now" (Events for the batch, then Due), produce the resulting wakes and dead letters in one
// acks=all round trip (retried while the partition is owned), and only then advance the
// offset the commit may reach. Produce happens on the runner's goroutine, so when a batch's
// produce returns, every wake decided so far is acknowledged, and the safe commit offset is
// min(engine watermark, offset after the last handled record).
type partitionRunner struct {
	c         *coalescer
	gen       committer
	partition int
	log       *slog.Logger
	eng       *coalesce.Engine
	stats     *partitionStats

	next      int64 // offset after the last handled record; -1 before the first
	committed int64 // last committed offset; -1 before the first commit
	// unacked is the lowest offset covered by records whose produce was given up (the partition
	// was lost or the service stopped while retrying); commits never pass it.
	unacked int64

	decisions []coalesce.WakeDecision
	events    []coalesce.EventInfo
	results   []coalesce.Outcome
	dead      []deadLetter
	outcomes  outcomeCounts
}

// deadLetter is a record that goes to push.events.dlq instead of the engine.
type deadLetter struct {
	msg    *kafka.Message
	kind   string // metric label: low cardinality
	reason string // full reason, without content
}

func newPartitionRunner(c *coalescer, gen committer, partition int) *partitionRunner {
	return &partitionRunner{
		c:         c,
		gen:       gen,
		partition: partition,
		log:       c.log.With("partition", partition),
		stats:     c.metrics.partition(partition),
		next:      -1,
		committed: -1,
		unacked:   math.MaxInt64,
	}
}

func (p *partitionRunner) close() { p.c.metrics.release(p.partition, p.stats) }

// run restores the partition's state, then consumes from offset (the group's committed offset,
// or kafka.FirstOffset) until ctx ends. It returns nil when ctx ended and what was safe is
// committed.
func (p *partitionRunner) run(ctx context.Context, offset int64) error {
	eng, err := coalesce.New(coalesce.Config{MinIntervals: p.c.cfg.intervals(), DedupWindow: p.c.cfg.window()})
	if err != nil {
		return err
	}
	p.eng = eng
	if offset >= 0 {
		p.next, p.committed = offset, offset
	}
	if err := p.restore(ctx, offset); err != nil {
		return fmt.Errorf("restore partition %d from %s: %w", p.partition, topics.Wakes, err)
	}

	rc := kafkax.PartitionReaderConfig(p.c.cfg.Kafka.Brokers, p.c.dialer, topics.Events, p.partition)
	rc.QueueCapacity = p.c.cfg.MaxBatch
	rc.ErrorLogger = p.c.kafkaLog("kafka-reader", p.partition)
	r := kafka.NewReader(rc)
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		return fmt.Errorf("seek %s/%d to %d: %w", topics.Events, p.partition, offset, err)
	}
	p.log.Info("partition assigned", "offset", offset, "tracked_devices", p.eng.Devices())

	msgs := make(chan kafka.Message, p.c.cfg.MaxBatch)
	fetchErr := make(chan error, 1)
	fetchCtx, stopFetch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopFetch(); wg.Wait() }()
	wg.Go(func() {
		for {
			m, err := r.FetchMessage(fetchCtx)
			if err != nil {
				if fetchCtx.Err() == nil {
					fetchErr <- fmt.Errorf("fetch %s/%d: %w", topics.Events, p.partition, err)
				}
				return
			}
			select {
			case msgs <- m:
			case <-fetchCtx.Done():
				return
			}
		}
	})

	timer := p.c.clock.NewTimer(time.Hour)
	defer timer.Stop()
	var armed time.Time // deadline the timer is set for; zero when idle
	commit := time.NewTicker(p.c.cfg.CommitInterval)
	defer commit.Stop()
	batch := make([]kafka.Message, 0, p.c.cfg.MaxBatch)
	for {
		if d, ok := p.eng.NextDeadline(); ok && !d.Equal(armed) {
			timer.Reset(max(0, d.Sub(p.c.clock.Now())))
			armed = d
		}
		select {
		case <-ctx.Done():
			return p.release()
		case err := <-fetchErr:
			p.release()
			return err
		case m := <-msgs:
			batch = append(batch[:0], m)
		more:
			for len(batch) < cap(batch) {
				select {
				case m := <-msgs:
					batch = append(batch, m)
				default:
					break more
				}
			}
			if err := p.handle(ctx, batch); err != nil {
				p.release()
				return err
			}
		case <-timer.C():
			armed = time.Time{}
			if err := p.handle(ctx, nil); err != nil {
				p.release()
				return err
			}
		case <-commit.C:
			p.commit()
		}
	}
}

// handle decides on a batch of records (possibly none: a timer fired) at one instant and
// produces the outcome.
func (p *partitionRunner) handle(ctx context.Context, batch []kafka.Message) error {
	now := p.c.clock.Now()
	clear(p.decisions)
	clear(p.dead)
	p.decisions, p.dead = p.decisions[:0], p.dead[:0]
	p.outcomes.reset()
	clear(p.events)
	p.events, p.results = p.events[:0], p.results[:0]
	for i := range batch {
		msg := &batch[i]
		ev, dl := p.decode(msg)
		if dl != nil {
			p.dead = append(p.dead, *dl)
			continue
		}
		p.events = append(p.events, ev)
	}
	// One decision round: events of a device woken in this batch join its (unsent) wake.
	p.decisions, p.results = p.eng.Events(p.decisions, p.results, now, p.events)
	for i, ev := range p.events {
		p.outcomes.add(ev.App, p.results[i])
	}
	p.outcomes.record(ctx, p.c.metrics)
	// Events first: a device whose trailing wake is overdue takes its new event along.
	p.decisions = p.eng.Due(p.decisions, now)
	if err := p.publish(ctx, p.decisions, p.dead); err != nil {
		return err
	}
	if len(batch) > 0 {
		p.next = batch[len(batch)-1].Offset + 1
		p.stats.fetched(&batch[len(batch)-1])
	}
	p.stats.set(p.eng)
	return nil
}

// decode turns a record into engine input, or into a dead letter.
func (p *partitionRunner) decode(msg *kafka.Message) (coalesce.EventInfo, *deadLetter) {
	ev, dl := decodeEvent(msg)
	if dl != nil {
		return coalesce.EventInfo{}, dl
	}
	if _, ok := p.c.cfg.apps.Get(ev.App); !ok {
		return coalesce.EventInfo{}, &deadLetter{msg: msg, kind: "unknown app", reason: "unknown app"}
	}
	return ev, nil
}

// publish produces the wakes, each under a process span linking to the events it covers, and
// the dead letters, and returns once all are acknowledged. Failed attempts are retried with
// backoff while the partition is owned; when ownership ends first, the offsets these records
// cover are remembered in unacked so that no commit passes them, and an error is returned.
func (p *partitionRunner) publish(ctx context.Context, wakes []coalesce.WakeDecision, dead []deadLetter) error {
	if len(wakes)+len(dead) == 0 {
		return nil
	}
	recs := make([]kafkax.Record, 0, len(wakes)+len(dead))
	spans := make([]trace.Span, 0, len(wakes))
	for i := range wakes {
		w := &wakes[i]
		sctx, span := p.c.processSpan(w, p.partition)
		spans = append(spans, span)
		app, _ := p.c.cfg.apps.Get(w.App)
		recs = append(recs, kafkax.Record{Ctx: sctx, Topic: topics.Wakes, Key: w.DeviceID, Msg: wakeRecord(w, app)})
	}
	now := p.c.clock.Now()
	for _, d := range dead {
		recs = append(recs, kafkax.Record{Topic: topics.EventsDLQ, Key: string(d.msg.Key), Msg: deadLetterRecord(d, now)})
	}

	backoff := 100 * time.Millisecond
	for {
		// An attempt in flight when ownership ends may finish (bounded), so that a wake already
		// decided still goes out on SIGTERM; a new attempt is not started.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.c.cfg.ProduceTimeout)
		err := p.c.producer.Produce(actx, recs...)
		cancel()
		if err == nil {
			break
		}
		p.log.Warn("produce wakes failed; retrying", "wakes", len(wakes), "dead_letters", len(dead), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		for _, w := range wakes {
			p.unacked = min(p.unacked, w.MinOffset)
		}
		for _, d := range dead {
			p.unacked = min(p.unacked, d.msg.Offset)
		}
		for _, s := range spans {
			s.SetStatus(codes.Error, "produce abandoned: partition released")
			s.End()
		}
		return fmt.Errorf("produce %d wake(s) and %d dead letter(s): %w (partition released while retrying)", len(wakes), len(dead), err)
	}
	for _, s := range spans {
		s.End()
	}
	m := p.c.metrics
	for i := range wakes {
		m.wake(ctx, &wakes[i])
	}
	for _, d := range dead {
		m.deadLetter(ctx, d.kind)
		p.log.Warn("dead-lettered event record", "offset", d.msg.Offset, "reason", d.reason)
	}
	return nil
}

// safeOffset is the offset the group may commit: every record below it is covered by an
// acknowledged wake, dead-lettered, or a duplicate.
func (p *partitionRunner) safeOffset() int64 {
	if p.next < 0 {
		return -1
	}
	return min(p.eng.Watermark(p.next), p.unacked)
}

// commit commits the safe offset if it moved. Errors are logged: the next tick retries, and an
// uncommitted offset only means a longer replay, which restore and dedup absorb.
func (p *partitionRunner) commit() {
	off := p.safeOffset()
	if off <= p.committed {
		return
	}
	if err := p.gen.CommitOffsets(map[string]map[int]int64{topics.Events: {p.partition: off}}); err != nil {
		p.log.Warn("commit failed", "offset", off, "err", err)
		return
	}
	p.committed = off
}

// release ends ownership: pending trailing wakes are not sent early (their events stay
// uncommitted, so the next owner re-derives them after restoring the last wake times), and what
// is safe is committed.
func (p *partitionRunner) release() error {
	p.commit()
	p.log.Info("partition released", "committed", p.committed, "pending_devices", p.eng.Pending(), "tracked_devices", p.eng.Devices())
	return nil
}
