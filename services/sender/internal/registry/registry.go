// Package registry is the sender's in-memory registration table: device_id -> the latest
// Registration, rebuilt at start from the compacted push.registrations topic (every partition,
// no consumer group, from the first offset) and kept current by following it.
//
// Every sender instance holds the whole table, not only its partitions' devices: kafka-go's
// group Reader does not say which partitions an instance owns, and a rebalance must not leave
// an instance without the registrations of partitions it just received. An entry costs ~270
// bytes with a 64-hex token (measured), so a million devices take ~270 MB per instance.
package registry

import (
	"context"
	"log/slog"
	"sync"
	"time"
	"unique"

	"github.com/segmentio/kafka-go"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/tail"
)

// Device is what the sender keeps of a device's latest registration.
type Device struct {
	App          string
	Platform     wakepushv1.Platform
	Environment  wakepushv1.Environment
	Token        string
	State        wakepushv1.RegistrationState
	RegisteredAt time.Time
	// UpdatedAt is the created_at of the latest registration record.
	UpdatedAt time.Time
}

// Active reports whether pushes may go to the device.
func (d Device) Active() bool {
	return d.State == wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE
}

// RegisteredBefore reports whether the device's latest registration is older than t (the
// provider's "token invalid since"). A device that registered again at or after t keeps its
// registration.
func (d Device) RegisteredBefore(t time.Time) bool {
	return d.UpdatedAt.Before(t) && d.RegisteredAt.Before(t)
}

// Table is the registration table.
type Table struct {
	log  *slog.Logger
	tail *tail.Tail

	mu      sync.RWMutex
	devices map[string]Device
}

// New returns a table following cfg's registrations topic; Run fills it.
func New(cfg *kafkax.Config, log *slog.Logger) (*Table, error) {
	t := &Table{log: log, devices: map[string]Device{}}
	tl, err := tail.New(cfg, tail.Options{Topic: topics.Registrations, Handle: t.handle, Log: log})
	if err != nil {
		return nil, err
	}
	t.tail = tl
	return t, nil
}

// Run follows the topic until ctx ends.
func (t *Table) Run(ctx context.Context) error { return t.tail.Run(ctx) }

// WaitCaughtUp waits until the table reflects every registration record acknowledged before the
// call. Registration records are written before the events they enable, so a device still
// unknown afterwards is really unknown.
func (t *Table) WaitCaughtUp(ctx context.Context) error { return t.tail.WaitCaughtUp(ctx) }

func (t *Table) handle(msg *kafka.Message) {
	key := string(msg.Key)
	if msg.Value == nil { // a tombstone: compaction will forget the device
		t.mu.Lock()
		delete(t.devices, key)
		t.mu.Unlock()
		return
	}
	m, err := records.Decode(kafkax.Header(msg, records.HeaderSchema), msg.Value)
	reg, ok := m.(*wakepushv1.Registration)
	if err != nil || !ok {
		t.log.Warn("registration table: skipping undecodable record", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	if reg.GetDeviceId() == "" {
		reg.DeviceId = key
	}
	t.Apply(reg)
}

// Apply sets a device's registration (what the topic will say once the record is read back;
// the sender applies its own unregistrations right away so in-flight wakes see them).
func (t *Table) Apply(reg *wakepushv1.Registration) {
	d := Device{
		App:          unique.Make(reg.GetApp()).Value(), // a few apps, millions of devices
		Platform:     reg.GetPlatform(),
		Environment:  reg.GetEnvironment(),
		Token:        reg.GetToken(),
		State:        reg.GetState(),
		RegisteredAt: reg.GetRegisteredAt().AsTime(),
		UpdatedAt:    reg.GetCreatedAt().AsTime(),
	}
	if reg.GetRegisteredAt() == nil {
		d.RegisteredAt = d.UpdatedAt
	}
	t.mu.Lock()
	t.devices[reg.GetDeviceId()] = d
	t.mu.Unlock()
}

// Get returns a device's latest registration.
func (t *Table) Get(deviceID string) (Device, bool) {
	t.mu.RLock()
	d, ok := t.devices[deviceID]
	t.mu.RUnlock()
	return d, ok
}

// Len is the number of devices known (active or not).
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.devices)
}

// Unregistration is the record that marks a device dead after a provider's answer: state
// UNREGISTERED, reason "<provider>:<reason>", provider_invalid_at from the provider.
func Unregistration(deviceID string, d Device, reason string, invalidAt, now time.Time) *wakepushv1.Registration {
	return &wakepushv1.Registration{
		Id:                records.NewID(),
		CreatedAt:         records.Timestamp(now),
		DeviceId:          deviceID,
		App:               d.App,
		Platform:          d.Platform,
		Environment:       d.Environment,
		Token:             d.Token,
		State:             wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED,
		Source:            wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER,
		Reason:            reason,
		ProviderInvalidAt: records.Timestamp(invalidAt),
		RegisteredAt:      records.Timestamp(d.RegisteredAt),
	}
}
