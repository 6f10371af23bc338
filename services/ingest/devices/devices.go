// Package devices keeps the set of unregistered registrations that ingest must refuse (DESIGN §3):
// it reads the compacted topic push.registrations, every partition, without a consumer group,
// from the start, and remembers the registrations (device id + registration id) whose latest
// state is UNREGISTERED, with the time they were unregistered. That is the only per-device
// state ingest holds; it is 40 bytes of key and value per unregistered registration.
//
// The set is ready once every partition was read up to the end offset it had at start (CaughtUp).
// A registration this instance writes itself is applied at once (Apply) so its own next answer
// reflects it; the consumer then reads the same record back, which changes nothing.
//
// Retention: an unregistration is kept for a while, so that late publishes for it are still
// answered "gone" (and an XMPP server disables the node) and a provider's "invalid since" is
// compared with registrations made meanwhile. After the retention, Expire writes a tombstone for
// its key: compaction then removes the registration from the topic, and every reader (this set,
// the sender's table) forgets it.
package devices

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	"github.com/wakepush/wakepush/services/internal/tail"
)

// key is a registration: the binary device id, then the binary registration id (all zero for a
// device's v1 registration, which has none).
type key [identity.DeviceIDLen/2 + identity.RegistrationIDLen/2]byte

func parseKey(deviceID, registrationID string) (key, bool) {
	var k key
	if !identity.ValidDeviceID(deviceID) || (registrationID != "" && !identity.ValidRegistrationID(registrationID)) {
		return k, false
	}
	if _, err := hex.Decode(k[:identity.DeviceIDLen/2], []byte(deviceID)); err != nil {
		return k, false
	}
	if _, err := hex.Decode(k[identity.DeviceIDLen/2:], []byte(registrationID)); err != nil {
		return k, false
	}
	return k, true
}

// String is the key's Kafka key (records.RegistrationKey).
func (k key) String() string {
	dev := hex.EncodeToString(k[:identity.DeviceIDLen/2])
	var reg string
	if [identity.RegistrationIDLen / 2]byte(k[identity.DeviceIDLen/2:]) != [identity.RegistrationIDLen / 2]byte{} {
		reg = hex.EncodeToString(k[identity.DeviceIDLen/2:])
	}
	return records.RegistrationKey(dev, reg)
}

// Set is the set of unregistered registrations. The zero value is not usable: call New.
type Set struct {
	mu   sync.RWMutex
	gone map[key]int64 // unix nanoseconds of the unregistration
	peak int           // most entries since gone was last rebuilt

	caughtUp     chan struct{}
	caughtUpOnce sync.Once

	tailMu sync.Mutex
	tail   *tail.Tail // set by Run
}

// New returns an empty set (not caught up).
func New() *Set {
	return &Set{gone: make(map[key]int64), caughtUp: make(chan struct{})}
}

// Unregistered reports whether the latest known state of the registration (registrationID ""
// for a device's v1 registration) is UNREGISTERED.
func (s *Set) Unregistered(deviceID, registrationID string) bool {
	k, ok := parseKey(deviceID, registrationID)
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
	k, ok := parseKey(reg.GetDeviceId(), reg.GetRegistrationId())
	if !ok {
		return
	}
	if reg.GetState() == wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED {
		at := reg.GetCreatedAt().AsTime().UnixNano()
		if reg.GetCreatedAt() == nil {
			at = time.Now().UnixNano() // cannot happen for wakepush's records; keep it the full retention
		}
		s.mu.Lock()
		s.gone[k] = at
		s.peak = max(s.peak, len(s.gone))
		s.mu.Unlock()
		return
	}
	s.forget(k)
}

func (s *Set) forget(k key) {
	s.mu.Lock()
	delete(s.gone, k)
	s.shrinkLocked()
	s.mu.Unlock()
}

// shrinkLocked rebuilds the map once it holds less than half of its peak: a Go map never gives
// back the memory of deleted entries, and expiry may remove most of them at once.
func (s *Set) shrinkLocked() {
	if s.peak < 1024 || len(s.gone) > s.peak/2 {
		return
	}
	m := make(map[key]int64, len(s.gone))
	for k, v := range s.gone {
		m[k] = v
	}
	s.gone, s.peak = m, len(m)
}

// Len is the number of unregistered registrations.
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
	if msg.Value == nil {
		if k, ok := parseKey(records.SplitRegistrationKey(string(msg.Key))); ok {
			s.forget(k)
		}
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
	if reg.DeviceId == "" {
		reg.DeviceId, reg.RegistrationId = records.SplitRegistrationKey(string(msg.Key))
	}
	s.Apply(reg)
}

// expired returns the registrations unregistered at or before cutoff, with their times.
func (s *Set) expired(cutoff time.Time) map[key]int64 {
	c := cutoff.UnixNano()
	out := map[key]int64{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, at := range s.gone {
		if at <= c {
			out[k] = at
		}
	}
	return out
}

// Producer writes records and returns once Kafka acknowledged them (kafkax.Producer).
type Producer interface {
	Produce(ctx context.Context, recs ...kafkax.Record) error
}

// expireBatch bounds the tombstones of one Produce call.
const expireBatch = 500

// Expire writes a tombstone for every registration unregistered for at least retention at now,
// and forgets them. Before it writes, it waits until the set has read every registration
// acknowledged so far (when it is fed by Run) and keeps only the registrations still
// unregistered since the same time: a registration made active again meanwhile (an ad-hoc
// account re-registering, a client renewing its registration) is never tombstoned. It returns
// the number of tombstones written.
func (s *Set) Expire(ctx context.Context, prod Producer, retention time.Duration, now time.Time) (int, error) {
	if retention <= 0 {
		return 0, nil
	}
	candidates := s.expired(now.Add(-retention))
	if len(candidates) == 0 {
		return 0, nil
	}
	s.tailMu.Lock()
	tl := s.tail
	s.tailMu.Unlock()
	if tl != nil {
		if err := tl.WaitCaughtUp(ctx); err != nil {
			return 0, fmt.Errorf("expire unregistrations: %w", err)
		}
	}
	var batch []kafkax.Record
	var keys []key
	written := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := prod.Produce(ctx, batch...); err != nil {
			return fmt.Errorf("expire unregistrations: write %d tombstone(s): %w", len(batch), err)
		}
		for _, k := range keys {
			s.forgetIf(k, candidates[k])
		}
		written += len(batch)
		batch, keys = batch[:0], keys[:0]
		return nil
	}
	for k, at := range candidates {
		s.mu.RLock()
		still, ok := s.gone[k]
		s.mu.RUnlock()
		if !ok || still != at {
			continue // active again, or unregistered again later
		}
		batch = append(batch, kafkax.Record{Ctx: ctx, Topic: topics.Registrations, Key: k.String()})
		keys = append(keys, k)
		if len(batch) >= expireBatch {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	return written, flush()
}

// forgetIf forgets k if it is still unregistered since at.
func (s *Set) forgetIf(k key, at int64) {
	s.mu.Lock()
	if cur, ok := s.gone[k]; ok && cur == at {
		delete(s.gone, k)
		s.shrinkLocked()
	}
	s.mu.Unlock()
}

// ExpireInterval is how often RunExpiry looks for expired unregistrations for a retention: a
// tenth of it, between 1 s and 1 h.
func ExpireInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Hour)
}

// RunExpiry calls Expire every ExpireInterval(retention) (the first time after a random part of
// it, so that several ingest instances rarely expire the same registrations at once; when they
// do, the duplicate tombstones are harmless) until ctx ends. retention <= 0 keeps
// unregistrations forever.
func (s *Set) RunExpiry(ctx context.Context, prod Producer, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	meter := otel.Meter("github.com/wakepush/wakepush/services/ingest")
	expiredCount, err := meter.Int64Counter("wakepush.ingest.registrations.expired",
		metric.WithDescription("tombstones written for registrations unregistered longer than the retention"))
	if err != nil {
		log.Warn("metric wakepush.ingest.registrations.expired", "err", err)
	}
	interval := ExpireInterval(retention)
	wait := rand.N(interval) + 1
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.caughtUp:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = interval
		n, err := s.Expire(ctx, prod, retention, time.Now())
		if n > 0 {
			if expiredCount != nil {
				expiredCount.Add(ctx, int64(n))
			}
			log.Info("expired unregistrations", "tombstones", n, "retention", retention)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("expiring unregistrations (retrying)", "err", err)
		}
	}
}

// PartitionRefresh is how often Run looks for partitions added to the topic.
const PartitionRefresh = tail.DefaultPartitionRefresh

// Run reads push.registrations until ctx ends, retrying while Kafka is unreachable. It returns
// nil when ctx ends.
func (s *Set) Run(ctx context.Context, cfg *kafkax.Config, log *slog.Logger) error {
	return s.run(ctx, cfg, log, PartitionRefresh)
}

func (s *Set) run(ctx context.Context, cfg *kafkax.Config, log *slog.Logger, refresh time.Duration) error {
	meter := otel.Meter("github.com/wakepush/wakepush/services/ingest")
	gauge, err := meter.Int64ObservableGauge("wakepush.ingest.unregistered_devices",
		metric.WithDescription("registrations whose latest state is UNREGISTERED (and not yet expired), as known to this instance"))
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

	tl, err := tail.New(cfg, tail.Options{
		Topic:            topics.Registrations,
		Handle:           func(msg *kafka.Message) { s.applyMessage(log, msg) },
		Log:              log,
		PartitionRefresh: refresh,
	})
	if err != nil {
		return err
	}
	s.tailMu.Lock()
	s.tail = tl
	s.tailMu.Unlock()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-tl.CaughtUp():
			log.Info("registrations caught up", "unregistered_registrations", s.Len())
			s.MarkCaughtUp()
		case <-done:
		}
	}()
	if err := tl.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
