package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/coalescer/coalesce"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// restore rebuilds the partition's engine from push.wakes before any event is consumed
// (README.md, "Restore"). push.wakes is keyed by device_id like push.events and has the same
// partition count, so partition p of push.wakes holds every wake of the devices of partition p.
//
// It reads the wakes of the last window (longest min_interval + restore slack), up to the end
// of the partition as it was when restore began: each gives its device's last wake time (so
// replayed or new events inside an interval are absorbed, not woken again) and the ids of the
// events it covered (so replayed events it covered are dropped as duplicates).
func (p *partitionRunner) restore(ctx context.Context) error {
	began := p.c.clock.Now()
	since := began.Add(-p.c.cfg.window())
	start, end, err := p.c.wakeOffsets(ctx, p.partition, since)
	if err != nil {
		return err
	}
	n := 0
	if start < end {
		rc := kafkax.PartitionReaderConfig(p.c.cfg.Kafka.Brokers, p.c.dialer, topics.Wakes, p.partition)
		rc.MaxWait = 100 * time.Millisecond
		rc.ErrorLogger = p.c.kafkaLog("kafka-reader", p.partition)
		r := kafka.NewReader(rc)
		defer r.Close()
		if err := r.SetOffset(start); err != nil {
			return fmt.Errorf("seek %s/%d: %w", topics.Wakes, p.partition, err)
		}
		for {
			msg, err := r.FetchMessage(ctx)
			if err != nil {
				return fmt.Errorf("read %s/%d at %d of %d: %w", topics.Wakes, p.partition, r.Offset(), end, err)
			}
			if w, err := decodeWake(&msg); err != nil {
				p.log.Warn("skipping undecodable wake during restore", "offset", msg.Offset, "err", err)
			} else {
				p.eng.Restore(began, coalesce.RestoredWake{
					DeviceID: w.GetDeviceId(),
					App:      w.GetApp(),
					At:       w.GetCreatedAt().AsTime(),
					EventIDs: w.GetEventIds(),
				})
				n++
			}
			if msg.Offset >= end-1 {
				break
			}
		}
	}
	took := p.c.clock.Now().Sub(began)
	p.c.metrics.restored(ctx, n, took)
	p.log.Info("partition state restored", "from", topics.Wakes, "since", since, "offsets", fmt.Sprintf("[%d,%d)", start, end),
		"wakes", n, "tracked_devices", p.eng.Devices(), "remembered_event_ids", p.eng.SeenIDs(), "took", took)
	return nil
}

// wakeOffsets returns the offset of the first wake of partition at or after since, and the end
// of the partition (the offset the next wake will get).
func (c *coalescer) wakeOffsets(ctx context.Context, partition int, since time.Time) (start, end int64, err error) {
	var errs []error
	for _, b := range c.cfg.Kafka.Brokers {
		conn, err := c.dialer.DialLeader(ctx, "tcp", b, topics.Wakes, partition)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		defer conn.Close()
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		} else {
			conn.SetDeadline(time.Now().Add(30 * time.Second))
		}
		if end, err = conn.ReadLastOffset(); err != nil {
			return 0, 0, fmt.Errorf("end offset of %s/%d: %w", topics.Wakes, partition, err)
		}
		if start, err = conn.ReadOffset(since); err != nil {
			return 0, 0, fmt.Errorf("offset of %s/%d at %s: %w", topics.Wakes, partition, since, err)
		}
		if start < 0 { // no record at or after since
			start = end
		}
		return start, end, nil
	}
	return 0, 0, fmt.Errorf("dial leader of %s/%d: %w", topics.Wakes, partition, errors.Join(errs...))
}
