// Package registry is the sender's in-memory registration table: device_id -> the device's token
// and the latest state of each of its registrations, for the partitions the sender instance
// owns: each partition of the compacted push.registrations topic is loaded from its first offset
// (no consumer group) when the instance's wakes consumer is assigned the partition, and kept
// current by following it (Table).
//
// An instance's memory so scales with its share of the devices, not with all of them. A device costs ~125
// bytes with one registration and a 64-hex token, ~215 with two (measured with a million
// devices, BenchmarkStoreMemory; the map[string]Device it replaced took ~445 and ~490), so a
// million devices take ~125 MB per instance, in memory the garbage collector does not scan
// (see store).
package registry

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
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

// Table is the registration table of the partitions this instance owns: a store per partition
// of push.registrations, loaded from the partition's first offset by a tail of its own when the
// group assigns the partition (Assign), and kept current by following it. Every topic is keyed
// by device id with the same partition count (DESIGN §2), so the owner of push.wakes partition
// p needs exactly the registrations of push.registrations partition p.
//
// A revoked partition is kept for Retain: a partition that comes back in the next generation is
// not loaded again (the group's assignment is sticky, kafkax.GroupReader, so an unchanged group
// gives every member its partitions back and a new member takes only its share). Only a
// partition new to the instance makes its wakes wait, and only for its own load, never for the
// whole table's. A partition dropped before its load finished releases its waiters (gone).
type Table struct {
	cfg    *kafkax.Config // nil: a local table (tests): every partition is held and loaded on first use
	log    *slog.Logger
	retain time.Duration

	mu    sync.Mutex
	parts map[int]*partition
	run   context.Context // Run's context; nil until Run starts (loads begin then)
	tails sync.WaitGroup  // the partitions' tails
	// view is parts for Get, which runs for every wake: a copy replaced on every change
	// (assignments are rare, lookups are not).
	view atomic.Pointer[map[int]*partition]
}

// partition is one partition's devices and the tail that fills them.
type partition struct {
	id     int
	store  *store
	tail   *tail.Tail    // nil in a local table
	loaded chan struct{} // closed once the records written before the load began were read
	gone   chan struct{} // closed when the table drops the partition (a load in progress ends)
	cancel context.CancelFunc
	// revoked is when the group took the partition away; zero while owned.
	revoked time.Time
	started time.Time
}

// Options configure a Table.
type Options struct {
	// Retain is how long a revoked partition's registrations are kept in case the partition
	// comes back; 0 drops them at once.
	Retain time.Duration
}

// DefaultRetain is the sender's default Options.Retain.
const DefaultRetain = time.Minute

// New returns a table of cfg's registrations topic; Run runs it, Assign gives it partitions.
func New(cfg *kafkax.Config, log *slog.Logger, opts Options) *Table {
	t := &Table{cfg: cfg, log: log, retain: opts.Retain, parts: map[int]*partition{}}
	t.publishLocked()
	return t
}

// NewLocal returns a table without Kafka: every partition is held, and loaded, from its first
// use; Apply fills it (tests and benchmarks).
func NewLocal(log *slog.Logger) *Table {
	t := New(nil, log, Options{})
	return t
}

// Run loads and follows the assigned partitions, and drops the revoked ones after Retain,
// until ctx ends.
func (t *Table) Run(ctx context.Context) error {
	t.mu.Lock()
	t.run = ctx
	for _, p := range t.parts {
		t.startLocked(p)
	}
	t.mu.Unlock()
	defer t.tails.Wait()
	tick := time.NewTicker(max(t.retain/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.dropRevoked(time.Now())
		}
	}
}

// Assign makes the table hold partitions: those it does not hold yet start loading, revoked ones
// it still holds are owned again.
func (t *Table) Assign(partitions []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range partitions {
		if p, ok := t.parts[id]; ok {
			p.revoked = time.Time{}
			continue
		}
		t.addLocked(id)
	}
	t.publishLocked()
}

// Revoke marks partitions taken away by the group; their registrations go after Retain unless
// Assign gives them back first.
func (t *Table) Revoke(partitions []int) {
	now := time.Now()
	t.mu.Lock()
	for _, id := range partitions {
		if p, ok := t.parts[id]; ok && p.revoked.IsZero() {
			p.revoked = now
		}
	}
	t.mu.Unlock()
	if t.retain == 0 {
		t.dropRevoked(now)
	}
}

// dropRevoked drops the partitions revoked at least Retain before now.
func (t *Table) dropRevoked(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var dropped []int
	var gone []chan struct{}
	devices := 0
	for id, p := range t.parts {
		if p.revoked.IsZero() || now.Sub(p.revoked) < t.retain {
			continue
		}
		if p.cancel != nil {
			p.cancel()
		}
		gone = append(gone, p.gone)
		devices += p.store.len()
		delete(t.parts, id)
		dropped = append(dropped, id)
	}
	if len(dropped) > 0 {
		slices.Sort(dropped)
		t.publishLocked()
		// Waiters are released once the table no longer lists the partitions (Partitions,
		// Get): a waiter that looks right away sees them gone.
		for _, g := range gone {
			close(g)
		}
		t.log.Info("registration table: dropped revoked partitions", "partitions", dropped, "devices", devices)
	}
}

// addLocked creates a partition and starts its load (once Run runs).
func (t *Table) addLocked(id int) *partition {
	p := &partition{id: id, store: newStore(), loaded: make(chan struct{}), gone: make(chan struct{})}
	t.parts[id] = p
	if t.cfg == nil {
		close(p.loaded)
		return p
	}
	tl, err := tail.New(t.cfg, tail.Options{Topic: topics.Registrations, Partitions: []int{id}, Handle: func(msg *kafka.Message) { t.handle(p, msg) }, Log: t.log})
	if err != nil {
		// Only a broken Kafka configuration gets here, and it was checked at start.
		t.log.Error("registration table: cannot follow a partition", "partition", id, "err", err)
		return p
	}
	p.tail = tl
	if t.run != nil {
		t.startLocked(p)
	}
	return p
}

// startLocked runs p's tail under Run's context and marks p loaded once it caught up.
func (t *Table) startLocked(p *partition) {
	if p.tail == nil || p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(t.run)
	p.cancel, p.started = cancel, time.Now()
	t.tails.Go(func() {
		if err := p.tail.Run(ctx); err != nil && ctx.Err() == nil {
			t.log.Error("registration table: following a partition stopped", "partition", p.id, "err", err)
		}
	})
	go func() {
		select {
		case <-p.tail.CaughtUp():
			close(p.loaded)
			t.log.Info("registration table: partition loaded", "partition", p.id, "devices", p.store.len(), "took", time.Since(p.started).Round(time.Millisecond))
		case <-ctx.Done():
		}
	}()
}

// publishLocked replaces Get's view of the partitions.
func (t *Table) publishLocked() {
	v := maps.Clone(t.parts)
	t.view.Store(&v)
}

// held returns the partition if the table holds it.
func (t *Table) held(id int) (*partition, bool) {
	p, ok := (*t.view.Load())[id]
	return p, ok
}

// hold returns the partition, creating it (and starting its load) when the table does not hold
// it: a wake of a partition the table was not given (a local table's first use; a wake handled
// after its partition was dropped). Such a partition counts as revoked now, so it goes after
// Retain unless assigned.
func (t *Table) hold(id int) *partition {
	if p, ok := t.held(id); ok {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.parts[id]
	if !ok {
		p = t.addLocked(id)
		if t.cfg != nil {
			p.revoked = time.Now()
		}
		t.publishLocked()
	}
	return p
}

// handle applies one record of partition p.
func (t *Table) handle(p *partition, msg *kafka.Message) {
	key := string(msg.Key)
	if msg.Value == nil { // a tombstone: compaction forgets the registration
		p.store.forget(records.SplitRegistrationKey(key))
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
	t.apply(p, reg)
}

func (t *Table) apply(p *partition, reg *wakepushv1.Registration) {
	if !p.store.apply(reg) {
		t.log.Warn("registration table: skipping a record with a malformed registration id", "partition", p.id)
	}
}

// Apply sets a registration's state in its partition (what the topic will say once the record
// is read back; the sender applies its own unregistrations right away so in-flight wakes see
// them). A partition the table does not hold is left alone: it is read from the topic when
// it is assigned.
func (t *Table) Apply(partition int, reg *wakepushv1.Registration) {
	p, ok := t.held(partition)
	if !ok && t.cfg == nil {
		p, ok = t.hold(partition), true
	}
	if ok {
		t.apply(p, reg)
	}
}

// Get returns a device's latest registration (built for the call: the caller's own), from a
// loaded partition only: a device of a
// partition still loading is not known yet (the caller waits with WaitCaughtUp and asks again).
func (t *Table) Get(partition int, deviceID string) (Device, bool) {
	p, ok := t.held(partition)
	if !ok {
		return Device{}, false
	}
	select {
	case <-p.loaded:
	default:
		return Device{}, false // still loading
	}
	return p.store.get(deviceID)
}

// WaitCaughtUp waits until the partition's registrations reflect every record acknowledged
// before the call (loading the partition first if the table does not hold it). Registration
// records are written before the events they enable, so a device still unknown afterwards is
// really unknown.
func (t *Table) WaitCaughtUp(ctx context.Context, partition int) error {
	for {
		p := t.hold(partition)
		select {
		case <-p.loaded:
		case <-p.gone:
			continue // dropped while loading (revoked past Retain): held again, loaded afresh
		case <-ctx.Done():
			return fmt.Errorf("registrations of partition %d not loaded: %w", partition, ctx.Err())
		}
		if p.tail == nil {
			return nil
		}
		return p.tail.WaitCaughtUp(ctx)
	}
}

// WaitLoaded waits until the partitions the table holds among partitions are loaded, or gone
// (dropped, revoked past Retain, before their load finished: no longer this instance's).
func (t *Table) WaitLoaded(ctx context.Context, partitions []int) error {
	for _, id := range partitions {
		p, ok := t.held(id)
		if !ok {
			continue
		}
		select {
		case <-p.loaded:
		case <-p.gone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Len is the number of devices the table holds (active or not), over every partition it holds.
func (t *Table) Len() int {
	n := 0
	for _, p := range *t.view.Load() {
		n += p.store.len()
	}
	return n
}

// Partitions are the partitions the table holds, owned or retained after a revocation, sorted.
func (t *Table) Partitions() []int {
	return slices.Sorted(maps.Keys(*t.view.Load()))
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
