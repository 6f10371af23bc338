package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// producer writes records and returns once they are acknowledged (*kafkax.Producer).
type producer interface {
	Produce(ctx context.Context, recs ...kafkax.Record) error
}

// committer commits consumer group offsets (*kafka.Generation).
type committer interface {
	CommitOffsets(offsets map[string]map[int]int64) error
}

// coalescer is the service: a consumer group member that runs one partition runner per
// assigned partition of push.events.
type coalescer struct {
	cfg      *settings
	log      *slog.Logger
	dialer   *kafka.Dialer
	producer producer
	metrics  *metrics
	tracer   trace.Tracer
	clock    coalesce.Clock
	// onJoined is called whenever a generation starts (readiness).
	onJoined func()
}

func newCoalescer(cfg *settings, log *slog.Logger, p producer) (*coalescer, error) {
	d, err := cfg.Kafka.Dialer()
	if err != nil {
		return nil, fmt.Errorf("kafka dialer: %w", err)
	}
	m, err := newMetrics()
	if err != nil {
		return nil, err
	}
	return &coalescer{
		cfg:      cfg,
		log:      log,
		dialer:   d,
		producer: p,
		metrics:  m,
		tracer:   otel.Tracer("github.com/wakepush/wakepush/services/coalescer"),
		clock:    coalesce.SystemClock{},
		onJoined: func() {},
	}, nil
}

// consume joins the consumer group and runs generations until ctx ends. Each generation starts
// one runner per assigned partition (kafka-go's Generation.Start): when the generation ends
// (rebalance) or ctx ends, every runner commits what is safe and returns before the group moves
// on. The group is always closed, so the member leaves at once instead of timing out.
func (c *coalescer) consume(ctx context.Context) error {
	// Sticky assignment: a member keeps its partitions across rebalances where the even spread
	// allows, so a scale event restores only the partitions that really move.
	sticky := &kafkax.StickyBalancer{}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    c.cfg.Group,
		Brokers:               c.cfg.Kafka.Brokers,
		Dialer:                c.dialer,
		Topics:                []string{topics.Events},
		StartOffset:           kafka.FirstOffset,
		SessionTimeout:        c.cfg.SessionTimeout,
		HeartbeatInterval:     c.cfg.SessionTimeout / 10,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		GroupBalancers:        []kafka.GroupBalancer{sticky, kafka.RangeGroupBalancer{}},
		Logger:                kafka.LoggerFunc(func(f string, a ...any) { c.log.Debug(fmt.Sprintf(f, a...), "component", "kafka-group") }),
		ErrorLogger:           kafka.LoggerFunc(func(f string, a ...any) { c.log.Warn(fmt.Sprintf(f, a...), "component", "kafka-group") }),
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	c.log.Info("joining consumer group", "group", c.cfg.Group, "topic", topics.Events, "settings", c.cfg.String())
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				break
			}
			// Join/sync errors: the group retries by itself after JoinGroupBackoff.
			c.log.Warn("consumer group generation failed", "group", c.cfg.Group, "err", err)
			continue
		}
		assigned := gen.Assignments[topics.Events]
		parts := make([]int, len(assigned))
		for i, a := range assigned {
			parts[i] = a.ID
		}
		sticky.SetOwned(topics.Events, parts)
		c.log.Info("joined consumer group", "group", c.cfg.Group, "generation", gen.ID, "member", gen.MemberID, "partitions", parts)
		c.onJoined()
		for _, a := range assigned {
			gen.Start(func(genCtx context.Context) { c.runPartition(ctx, genCtx, gen, a.ID, a.Offset) })
		}
	}
	c.log.Info("leaving consumer group", "group", c.cfg.Group)
	// Close ends the current generation, waits for the runners (each commits what is safe)
	// and leaves the group. It is bounded by the drain timeout: past it the process exits and
	// the broker expires the membership after the session timeout.
	closed := make(chan error, 1)
	go func() { closed <- group.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			return fmt.Errorf("close consumer group: %w", err)
		}
		return nil
	case <-time.After(c.cfg.Service.DrainTimeout):
		return fmt.Errorf("consumer group not closed within the drain timeout (%s)", c.cfg.Service.DrainTimeout)
	}
}

// kafkaLog adapts kafka-go's error logger to the service log.
func (c *coalescer) kafkaLog(component string, partition int) kafka.Logger {
	return kafka.LoggerFunc(func(f string, a ...any) {
		c.log.Warn(fmt.Sprintf(f, a...), "component", component, "partition", partition)
	})
}

// runPartition owns one partition for the lifetime of a generation (genCtx) or of the service
// (ctx), whichever ends first. A runner that fails ends the generation, so the group rebalances
// and the partition is restored afresh; the backoff keeps that from spinning.
func (c *coalescer) runPartition(ctx, genCtx context.Context, gen committer, partition int, offset int64) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(genCtx, cancel)
	defer stop()

	p := newPartitionRunner(c, gen, partition)
	defer p.close()
	log := c.log.With("partition", partition)
	if err := p.run(pctx, offset); err != nil && pctx.Err() == nil {
		log.Error("partition runner failed; ending the generation", "err", err)
		select {
		case <-pctx.Done():
		case <-time.After(time.Second):
		}
	}
}
