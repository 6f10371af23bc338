// Package devices keeps the set of unregistered devices that ingest must refuse (DESIGN §3):
// it reads the compacted topic push.registrations, every partition, without a consumer group,
// from the start, and remembers the device ids whose latest state is UNREGISTERED. That is the
// only per-device state ingest holds; it is 16 bytes per unregistered device.
//
// The set is ready once every partition was read up to the end offset it had at start (CaughtUp).
// A registration this instance writes itself is applied at once (Apply) so its own next answer
// reflects it; the consumer then reads the same record back, which changes nothing.
package devices

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

type key [identity.DeviceIDLen / 2]byte

func parseKey(id string) (key, bool) {
	var k key
	if !identity.ValidDeviceID(id) {
		return k, false
	}
	if _, err := hex.Decode(k[:], []byte(id)); err != nil {
		return k, false
	}
	return k, true
}

// Set is the set of unregistered devices. The zero value is not usable: call New.
type Set struct {
	mu   sync.RWMutex
	gone map[key]struct{}

	caughtUp     chan struct{}
	caughtUpOnce sync.Once
}

// New returns an empty set (not caught up).
func New() *Set {
	return &Set{gone: make(map[key]struct{}), caughtUp: make(chan struct{})}
}

// Unregistered reports whether the device's latest known state is UNREGISTERED.
func (s *Set) Unregistered(deviceID string) bool {
	k, ok := parseKey(deviceID)
	if !ok {
		return false
	}
	s.mu.RLock()
	_, gone := s.gone[k]
	s.mu.RUnlock()
	return gone
}

// Apply records a registration state.
func (s *Set) Apply(reg *wakepushv1.Registration) {
	s.set(reg.GetDeviceId(), reg.GetState() == wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED)
}

func (s *Set) set(deviceID string, gone bool) {
	k, ok := parseKey(deviceID)
	if !ok {
		return
	}
	s.mu.Lock()
	if gone {
		s.gone[k] = struct{}{}
	} else {
		delete(s.gone, k)
	}
	s.mu.Unlock()
}

// Len is the number of unregistered devices.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.gone)
}

// CaughtUp is closed once the set reflects every registration written before Run started.
func (s *Set) CaughtUp() <-chan struct{} { return s.caughtUp }

// MarkCaughtUp closes CaughtUp (for sets that are not fed by Run, e.g. in tests).
func (s *Set) MarkCaughtUp() { s.caughtUpOnce.Do(func() { close(s.caughtUp) }) }

// applyMessage applies one record of the registrations topic. A tombstone (nil value) forgets the
// key. An undecodable record is logged and skipped: it cannot be a valid unregistration.
func (s *Set) applyMessage(log *slog.Logger, msg *kafka.Message) {
	id := string(msg.Key)
	if msg.Value == nil {
		s.set(id, false)
		return
	}
	reg := &wakepushv1.Registration{}
	schema := kafkax.Header(msg, records.HeaderSchema)
	if schema != "" && schema != records.SchemaName(reg) {
		log.Warn("skipping record of unexpected schema", "topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "schema", schema)
		return
	}
	if err := proto.Unmarshal(msg.Value, reg); err != nil {
		log.Warn("skipping undecodable registration", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	if reg.DeviceId != "" {
		id = reg.DeviceId
	}
	s.set(id, reg.State == wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED)
}

// Run reads push.registrations until ctx ends, retrying while Kafka is unreachable. It returns
// nil when ctx ends.
func (s *Set) Run(ctx context.Context, cfg *kafkax.Config, log *slog.Logger) error {
	meter := otel.Meter("github.com/wakepush/wakepush/services/ingest")
	gauge, err := meter.Int64ObservableGauge("wakepush.ingest.unregistered_devices",
		metric.WithDescription("devices whose latest registration state is UNREGISTERED, as known to this instance"))
	if err != nil {
		return fmt.Errorf("metric: %w", err)
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(gauge, int64(s.Len()))
		return nil
	}, gauge)
	if err != nil {
		return fmt.Errorf("metric callback: %w", err)
	}
	defer reg.Unregister()

	client, err := cfg.Client()
	if err != nil {
		return err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return err
	}
	c := &consumer{set: s, cfg: cfg, client: client, dialer: dialer, log: log, started: map[int]bool{}}
	return c.run(ctx)
}

type consumer struct {
	set     *Set
	cfg     *kafkax.Config
	client  *kafka.Client
	dialer  *kafka.Dialer
	log     *slog.Logger
	started map[int]bool
	wg      sync.WaitGroup

	mu      sync.Mutex
	pending int // partitions not caught up yet (initial partitions only)
}

// PartitionRefresh is how often the consumer looks for partitions added to the topic.
const PartitionRefresh = 30 * time.Second

func (c *consumer) run(ctx context.Context) error {
	defer c.wg.Wait()
	backoff := 200 * time.Millisecond
	first := true
	for {
		err := c.startPartitions(ctx, first)
		if err == nil {
			first = false
			backoff = 200 * time.Millisecond
		} else if ctx.Err() == nil {
			c.log.Warn("reading registrations: cannot list partitions, retrying", "err", err, "in", backoff)
		}
		wait := PartitionRefresh
		if err != nil {
			wait = backoff
			backoff = min(2*backoff, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// startPartitions starts a reader for each partition that has none. On the first successful
// call, it records every partition's end offset as the catch-up target.
func (c *consumer) startPartitions(ctx context.Context, first bool) error {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	meta, err := c.client.Metadata(tctx, &kafka.MetadataRequest{Topics: []string{topics.Registrations}})
	if err != nil {
		return err
	}
	var parts []int
	for _, t := range meta.Topics {
		if t.Name != topics.Registrations {
			continue
		}
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			if !c.started[p.ID] {
				parts = append(parts, p.ID)
			}
		}
	}
	if first && len(parts) == 0 && len(c.started) == 0 {
		return fmt.Errorf("topic %s has no partitions", topics.Registrations)
	}
	if len(parts) == 0 {
		return nil
	}
	targets := map[int]int64{}
	if first {
		reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
		for _, p := range parts {
			reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		}
		resp, err := c.client.ListOffsets(tctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topics.Registrations: reqs}})
		if err != nil {
			return fmt.Errorf("list offsets: %w", err)
		}
		for _, po := range resp.Topics[topics.Registrations] {
			if po.Error != nil {
				return fmt.Errorf("list offsets of partition %d: %w", po.Partition, po.Error)
			}
			if po.LastOffset > po.FirstOffset {
				targets[po.Partition] = po.LastOffset
			}
		}
		c.mu.Lock()
		c.pending = len(targets)
		c.mu.Unlock()
		c.log.Info("reading registrations", "partitions", len(parts), "partitions_with_records", len(targets))
		if len(targets) == 0 {
			c.set.MarkCaughtUp()
		}
	}
	for _, p := range parts {
		c.started[p] = true
		target, hasTarget := targets[p]
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.readPartition(ctx, p, target, hasTarget)
		}()
	}
	return nil
}

func (c *consumer) partitionCaughtUp(p int) {
	c.mu.Lock()
	c.pending--
	done := c.pending == 0
	c.mu.Unlock()
	c.log.Debug("registrations partition caught up", "partition", p)
	if done {
		c.log.Info("registrations caught up", "unregistered_devices", c.set.Len())
		c.set.MarkCaughtUp()
	}
}

// readPartition reads one partition from its first offset until ctx ends, re-creating the reader
// after errors. When hasTarget, it reports catching up once it read the record before target.
func (c *consumer) readPartition(ctx context.Context, p int, target int64, hasTarget bool) {
	next := kafka.FirstOffset
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:         c.cfg.Brokers,
			Topic:           topics.Registrations,
			Partition:       p,
			Dialer:          c.dialer,
			MinBytes:        1,
			MaxBytes:        8 << 20,
			MaxWait:         500 * time.Millisecond,
			ReadBackoffMin:  50 * time.Millisecond,
			ReadBackoffMax:  time.Second,
			ReadLagInterval: -1,
		})
		if err := r.SetOffset(next); err != nil {
			r.Close()
			c.log.Error("registrations reader", "partition", p, "err", err)
			return
		}
		for {
			msg, err := r.ReadMessage(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
					c.log.Warn("reading registrations failed, retrying", "partition", p, "offset", next, "err", err)
				}
				break
			}
			backoff = 200 * time.Millisecond
			c.set.applyMessage(c.log, &msg)
			next = msg.Offset + 1
			if hasTarget && next >= target {
				hasTarget = false
				c.partitionCaughtUp(p)
			}
		}
		r.Close()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}
