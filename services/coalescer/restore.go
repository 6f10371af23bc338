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
// offset is where consumption will start (the group's committed offset, or kafka.FirstOffset).
// The wakes read are those from the start of the lookback up to the end of the partition as it
// was when restore began: each gives its device's last wake time (so replayed or new events
// inside an interval are absorbed, not woken again) and the ids of the events it covered (so
// replayed events it covered are dropped as duplicates). The lookback is one window (longest
// min_interval + restore slack, the dedup window) before now or, when earlier, before the
// record time of the first event at or after offset: the restored engine then knows every
// wake the engine that handled that event before knew, however long ago the last commit or
// the handover was. A wake covering an event the replay will see was produced after it; a
// re-delivered event (producer retry) comes within the dedup window of its original, and
// record times out of offset order differ by less than the window.
func (p *partitionRunner) restore(ctx context.Context, offset int64) error {
	began := p.c.clock.Now()
	from := began
	first, ok, err := p.c.firstEventTime(ctx, p.partition, offset)
	if err != nil {
		return err
	}
	if ok && first.Before(from) {
		from = first
	}
	since := from.Add(-p.c.cfg.window())
	start, end, err := p.c.wakeOffsets(ctx, p.partition, since)
	if err != nil {
		return err
	}
	n := 0
	if start < end {
		rc := kafkax.PartitionReaderConfig(p.c.cfg.Kafka.Brokers, p.c.dialer, topics.Wakes, p.partition)
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
	conn, err := c.dialLeader(ctx, topics.Wakes, partition)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
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

// firstEventTime returns the record timestamp (the producer's clock when ingest wrote it) of
// the first event of partition at or after offset (kafka.FirstOffset: the first retained one),
// and false when there is none yet: the replay will see no event older than the window.
func (c *coalescer) firstEventTime(ctx context.Context, partition int, offset int64) (time.Time, bool, error) {
	conn, err := c.dialLeader(ctx, topics.Events, partition)
	if err != nil {
		return time.Time{}, false, err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("offsets of %s/%d: %w", topics.Events, partition, err)
	}
	// Below the log start (kafka.FirstOffset, or a commit older than the retention) the reader
	// starts at the first retained record.
	offset = max(offset, first)
	if offset >= last {
		return time.Time{}, false, nil
	}
	if _, err := conn.Seek(offset, kafka.SeekAbsolute); err != nil {
		return time.Time{}, false, fmt.Errorf("seek %s/%d to %d: %w", topics.Events, partition, offset, err)
	}
	// MinBytes 1: the record exists, so the fetch returns at once; a batch may start below
	// offset, and ReadMessage skips to it.
	batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 1 << 20, MaxWait: time.Second})
	msg, rerr := batch.ReadMessage()
	cerr := batch.Close()
	if rerr != nil {
		return time.Time{}, false, fmt.Errorf("read %s/%d at %d: %w", topics.Events, partition, offset, rerr)
	}
	if cerr != nil {
		return time.Time{}, false, fmt.Errorf("read %s/%d at %d: %w", topics.Events, partition, offset, cerr)
	}
	return msg.Time, true, nil
}

// dialLeader connects to the leader of topic/partition through the first broker that answers,
// with ctx's deadline (or 30 s) on the connection.
func (c *coalescer) dialLeader(ctx context.Context, topic string, partition int) (*kafka.Conn, error) {
	var errs []error
	for _, b := range c.cfg.Kafka.Brokers {
		conn, err := c.dialer.DialLeader(ctx, "tcp", b, topic, partition)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		} else {
			conn.SetDeadline(time.Now().Add(30 * time.Second))
		}
		return conn, nil
	}
	return nil, fmt.Errorf("dial leader of %s/%d: %w", topic, partition, errors.Join(errs...))
}
