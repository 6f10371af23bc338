// Package registry is the sender's in-memory registration table: device_id -> the device's token
// and the latest state of each of its registrations, rebuilt at start from the compacted push.registrations topic (every partition,
// no consumer group, from the first offset) and kept current by following it.
//
// Every sender instance holds the whole table, not only its partitions' devices: kafka-go's
// group Reader does not say which partitions an instance owns, and a rebalance must not leave
// an instance without the registrations of partitions it just received. A device costs ~125
// bytes with one registration and a 64-hex token, ~215 with two (measured with a million
// devices, BenchmarkStoreMemory; the map[string]Device it replaced took ~445 and ~490), so a
// million devices take ~125 MB per instance, in memory the garbage collector does not scan
// (see store).
package registry

import (
	"context"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
	"github.com/wakepush/wakepush/services/internal/tail"
)

// Device is what the sender keeps of a device: its token and its registrations (one per HTTP API
// registration, ad-hoc account and token-node environment, or the one v1 registration of a
// device registered before registration ids). The device gets wakes while any registration is
// ACTIVE; its Environment is production when any active registration says so, else sandbox.
type Device struct {
	App         string
	Platform    wakepushv1.Platform
	Environment wakepushv1.Environment
	Token       string
	// State is ACTIVE when any registration is, else UNREGISTERED.
	State wakepushv1.RegistrationState
	// RegisteredAt and UpdatedAt are the latest of the registrations'.
	RegisteredAt time.Time
	UpdatedAt    time.Time
	// Registrations is the caller's own: the table builds a Device for each Get (it keeps
	// devices in a layout of its own, see store).
	Registrations []Registration
}

// Registration is one registration of a device (16 bytes of id and a few words: a device of a
// few registrations costs little more than one).
type Registration struct {
	id          [16]byte
	hasID       bool // false: the device's v1 registration (Kafka key = device id)
	Environment wakepushv1.Environment
	State       wakepushv1.RegistrationState
	// Unix nanoseconds: registered_at and the created_at of the latest record.
	registeredAt, updatedAt int64
}

// ID is the registration id ("" for the device's v1 registration).
func (r Registration) ID() string {
	if !r.hasID {
		return ""
	}
	return hex.EncodeToString(r.id[:])
}

// Active reports whether the registration is ACTIVE.
func (r Registration) Active() bool {
	return r.State == wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE
}

// RegisteredBefore reports whether the registration's latest record is older than t (the
// provider's "token invalid since"). A registration renewed at or after t is kept.
func (r Registration) RegisteredBefore(t time.Time) bool {
	n := t.UnixNano()
	return r.updatedAt < n && r.registeredAt < n
}

// Active reports whether pushes may go to the device.
func (d Device) Active() bool {
	return d.State == wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE
}

// RegisteredBefore reports whether every active registration of the device is older than t.
func (d Device) RegisteredBefore(t time.Time) bool {
	for _, r := range d.Registrations {
		if r.Active() && !r.RegisteredBefore(t) {
			return false
		}
	}
	return true
}

// sameEnvironment treats UNSPECIFIED as production (what the providers do).
func sameEnvironment(a, b wakepushv1.Environment) bool {
	return (a == wakepushv1.Environment_ENVIRONMENT_SANDBOX) == (b == wakepushv1.Environment_ENVIRONMENT_SANDBOX)
}

// parseRegistrationID decodes a registration id ("" → the v1 registration); false for garbage.
func parseRegistrationID(id string) (out [16]byte, hasID, ok bool) {
	if id == "" {
		return out, false, true
	}
	if len(id) != 32 {
		return out, false, false
	}
	if _, err := hex.Decode(out[:], []byte(id)); err != nil {
		return out, false, false
	}
	return out, true, true
}

// Table is the registration table.
type Table struct {
	log  *slog.Logger
	tail *tail.Tail

	devices *store
}

// New returns a table following cfg's registrations topic; Run fills it.
func New(cfg *kafkax.Config, log *slog.Logger) (*Table, error) {
	t := &Table{log: log, devices: newStore()}
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
	if msg.Value == nil { // a tombstone: compaction forgets the registration
		t.forget(records.SplitRegistrationKey(key))
		return
	}
	m, err := records.Decode(kafkax.Header(msg, records.HeaderSchema), msg.Value)
	reg, ok := m.(*wakepushv1.Registration)
	if err != nil || !ok {
		t.log.Warn("registration table: skipping undecodable record", "partition", msg.Partition, "offset", msg.Offset, "err", err)
		return
	}
	if reg.GetDeviceId() == "" {
		reg.DeviceId, reg.RegistrationId = records.SplitRegistrationKey(key)
	}
	t.Apply(reg)
}

// forget removes a registration after its tombstone, and the device with its last one.
func (t *Table) forget(deviceID, registrationID string) { t.devices.forget(deviceID, registrationID) }

// Apply sets a registration's state (what the topic will say once the record is read back;
// the sender applies its own unregistrations right away so in-flight wakes see them).
func (t *Table) Apply(reg *wakepushv1.Registration) {
	if !t.devices.apply(reg) {
		t.log.Warn("registration table: skipping a record with a malformed registration id", "device_id", reg.GetDeviceId())
	}
}

// summarize derives the device's State, Environment and times from its registrations. An
// active device pushes to production when any active registration says production (a sandbox
// registration of a production token, whoever made it, must not divert the device's wakes),
// else to the sandbox; an inactive device keeps the environment of its latest record.
func summarize(d Device) Device {
	var registered, updated, latest, latestProd int64
	active, production := false, false
	var latestEnv, prodEnv wakepushv1.Environment
	for _, r := range d.Registrations {
		registered, updated = max(registered, r.registeredAt), max(updated, r.updatedAt)
		if r.updatedAt >= latest {
			latest, latestEnv = r.updatedAt, r.Environment
		}
		if !r.Active() {
			continue
		}
		active = true
		if r.Environment != wakepushv1.Environment_ENVIRONMENT_SANDBOX && (!production || r.updatedAt >= latestProd) {
			production, latestProd, prodEnv = true, r.updatedAt, r.Environment
		}
	}
	switch {
	case production:
		d.State, d.Environment = wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, prodEnv
	case active:
		d.State, d.Environment = wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, wakepushv1.Environment_ENVIRONMENT_SANDBOX
	default:
		d.State, d.Environment = wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED, latestEnv
	}
	d.RegisteredAt, d.UpdatedAt = time.Unix(0, registered), time.Unix(0, updated)
	return d
}

// Get returns a device's latest registration (built for the call: the caller's own).
func (t *Table) Get(deviceID string) (Device, bool) { return t.devices.get(deviceID) }

// Len is the number of devices known (active or not).
func (t *Table) Len() int { return t.devices.len() }

// Unregistrations are the records that end a device's registrations after a provider's "this
// token is dead" answer for a push to environment env: every ACTIVE registration in that
// environment older than invalidAt (the provider's timestamp) gets state UNREGISTERED, source
// SENDER, reason "<provider>:<reason>", provider_invalid_at. Registrations made or renewed at or
// after invalidAt, and registrations in the other environment, stay.
func Unregistrations(deviceID string, d Device, env wakepushv1.Environment, reason string, invalidAt, now time.Time) []*wakepushv1.Registration {
	var out []*wakepushv1.Registration
	for _, r := range d.Registrations {
		if !r.Active() || !sameEnvironment(r.Environment, env) || !r.RegisteredBefore(invalidAt) {
			continue
		}
		out = append(out, &wakepushv1.Registration{
			Id:                records.NewID(),
			CreatedAt:         records.Timestamp(now),
			DeviceId:          deviceID,
			RegistrationId:    r.ID(),
			App:               d.App,
			Platform:          d.Platform,
			Environment:       r.Environment,
			Token:             d.Token,
			State:             wakepushv1.RegistrationState_REGISTRATION_STATE_UNREGISTERED,
			Source:            wakepushv1.RegistrationSource_REGISTRATION_SOURCE_SENDER,
			Reason:            reason,
			ProviderInvalidAt: records.Timestamp(invalidAt),
			RegisteredAt:      records.Timestamp(time.Unix(0, r.registeredAt)),
		})
	}
	return out
}
