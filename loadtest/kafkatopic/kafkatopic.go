// Package kafkatopic reads what a run left in Kafka, for the load tools' checks: every record of
// a topic, its record count, its end offsets and a consumer group's committed offsets.
package kafkatopic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Client asks one broker about topics, on a kafka-go transport of its own: the shared
// DefaultTransport caches metadata per address, which outlives a broker restarted (or a new
// broker started) on the same address.
type Client struct {
	addr string
	tr   *kafka.Transport
	c    *kafka.Client
}

// Open returns a client of the broker at addr; Close it.
func Open(addr string) *Client {
	tr := &kafka.Transport{}
	return &Client{addr: addr, tr: tr, c: &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second, Transport: tr}}
}

// Close closes the client's connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Count is Client.Count on a client of its own.
func Count(ctx context.Context, addr, topic string) (int64, error) {
	c := Open(addr)
	defer c.Close()
	return c.Count(ctx, topic)
}

// Read is Client.Read on a client of its own.
func Read(ctx context.Context, addr, topic string, fn func(kafka.Message)) error {
	c := Open(addr)
	defer c.Close()
	return c.Read(ctx, topic, fn)
}

// Partitions returns the partition ids of topic.
func (c *Client) Partitions(ctx context.Context, topic string) ([]int, error) {
	meta, err := c.c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(meta.Topics) != 1 || meta.Topics[0].Error != nil {
		return nil, fmt.Errorf("metadata of %s: %+v", topic, meta.Topics)
	}
	ids := make([]int, 0, len(meta.Topics[0].Partitions))
	for _, p := range meta.Topics[0].Partitions {
		ids = append(ids, p.ID)
	}
	return ids, nil
}

// Offsets are a partition's first and end offsets (end: the offset the next record gets).
type Offsets struct{ First, End int64 }

// PartitionOffsets returns the first and end offsets of every partition of topic.
func (c *Client) PartitionOffsets(ctx context.Context, topic string) (map[int]Offsets, error) {
	parts, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	var req []kafka.OffsetRequest
	for _, p := range parts {
		req = append(req, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	resp, err := c.c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	out := make(map[int]Offsets, len(parts))
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = Offsets{First: p.FirstOffset, End: p.LastOffset}
	}
	return out, nil
}

// Count is the number of records in a topic (end − first offsets over its partitions).
func (c *Client) Count(ctx context.Context, topic string) (int64, error) {
	offs, err := c.PartitionOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range offs {
		n += o.End - o.First
	}
	return n, nil
}

// Lag is how many records of topic the consumer group has not committed yet, summed over the
// partitions (a partition without a committed offset, or a group that does not exist yet,
// counts from its first offset).
func (c *Client) Lag(ctx context.Context, group, topic string) (int64, error) {
	offs, err := c.PartitionOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	parts := make([]int, 0, len(offs))
	for p := range offs {
		parts = append(parts, p)
	}
	resp, err := c.c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, err)
	}
	if resp.Error != nil && !errors.Is(resp.Error, kafka.GroupIdNotFound) { // no group yet: nothing committed
		return 0, fmt.Errorf("committed offsets of group %s on %s: %w", group, topic, resp.Error)
	}
	committed := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for p, o := range offs {
		at, ok := committed[p]
		if !ok || at < o.First {
			at = o.First // -1: nothing committed yet
		}
		lag += max(o.End-at, 0)
	}
	return lag, nil
}

// Read calls fn for every record in topic, partition by partition, from the first offset to the
// end offset of when it started.
func (c *Client) Read(ctx context.Context, topic string, fn func(kafka.Message)) error {
	parts, err := c.Partitions(ctx, topic)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := readPartition(ctx, c.addr, topic, p, fn); err != nil {
			return fmt.Errorf("read %s/%d: %w", topic, p, err)
		}
	}
	return nil
}

func readPartition(ctx context.Context, addr, topic string, partition int, fn func(kafka.Message)) error {
	conn, err := kafka.DialLeader(ctx, "tcp", addr, topic, partition)
	if err != nil {
		return err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return err
	}
	next := first
	for next < last {
		if _, err := conn.Seek(next, kafka.SeekAbsolute); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		batch := conn.ReadBatch(1, 16<<20)
		got := false
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset < next {
				continue // a batch can start before the offset asked for
			}
			got = true
			next = m.Offset + 1
			if m.Offset < last {
				fn(m)
			}
		}
		if err := batch.Close(); err != nil && !got {
			return err
		}
		if !got {
			return fmt.Errorf("no records at offset %d of %d", next, last)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}
