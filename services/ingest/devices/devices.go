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
	"github.com/wakepush/wakepush/services/internal/tail"
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

	tl, err := tail.New(cfg, tail.Options{
		Topic:            topics.Registrations,
		Handle:           func(msg *kafka.Message) { s.applyMessage(log, msg) },
		Log:              log,
		PartitionRefresh: refresh,
	})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-tl.CaughtUp():
			log.Info("registrations caught up", "unregistered_devices", s.Len())
			s.MarkCaughtUp()
		case <-done:
		}
	}()
	if err := tl.Run(ctx); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
