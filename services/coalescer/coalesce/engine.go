// Package coalesce is the coalescer's decision core: a pure, clock-driven state machine that
// turns one partition's push events into wakes (DESIGN §5). It does no I/O and reads no clock:
// every call takes the current time, so tests drive it with a fake clock and a replay can be
// reasoned about exactly.
//
// # Rules, per device, with min_interval I of the device's app
//
//   - Leading edge: an event for a device with no wake in the last I wakes it now (LEADING).
//   - Coalesce: an event inside the interval is absorbed; the device then has a pending batch.
//   - Trailing edge: when the interval of the last wake ends (last wake + I) and the device has a
//     pending batch, one more wake covers the whole batch (TRAILING). With no pending batch
//     nothing is sent and the device is forgotten.
//   - Urgent: an urgent event (a call) wakes the device now (URGENT) whatever the interval, and
//     that wake covers the pending batch too. An urgent wake is a wake: it starts a new interval,
//     so later non-urgent events wait until urgent wake + I. DESIGN's rate invariant is about
//     non-urgent wakes only; it still holds because the last-wake time only moves forward, and
//     this choice spends the fewest pushes (the extension woken by the call fetches everything
//     pending anyway).
//   - Overdue trailing: an event for a device whose trailing deadline has passed but whose
//     trailing wake was not emitted yet (Due not called yet) joins that trailing wake, emitted now.
//   - Same batch (Events only): an event of a device woken earlier in the same Events call joins
//     that wake, which is not sent yet, instead of waiting for the next interval.
//   - Dedup: an event id seen in the last DedupWindow changes nothing (Duplicate).
//
// Invariants (tested by simulation against a reference model): every accepted, non-duplicate
// event is covered by exactly one wake, created at or after the event was processed and at most
// I later when Due is called at NextDeadline; two non-urgent wakes of a device are at least I
// apart; every wake covers at least one event no other wake covers.
//
// # State and memory
//
// A device is tracked only while it had a wake in the last I: a device with no recent wake
// behaves exactly like an unknown one. Every tracked device has exactly one timer, at last
// wake + I, in a per-partition binary heap: when it fires the device either gets its trailing
// wake (and a new timer) or is dropped. A tracked device without pending events costs a 32-byte
// pointer-free struct in a slab (its id as 16 bytes when canonical, devices.go), a 4-byte slot
// in an open-addressing index and a 4-byte heap slot: about 45 bytes measured over 1M devices.
// Pending events add a batch (side map) that keeps at most MaxEventIDs ids and MaxLinks links.
// Seen event ids live in a per-partition set of 16-byte keys that expire after DedupWindow.
//
// # Offsets
//
// Events must be given in partition offset order. Watermark returns the lowest offset of an event
// that is pending (absorbed, not yet covered by an emitted wake): the consumer may commit up to it
// once the wakes emitted so far are acknowledged. Each WakeDecision carries MinOffset, the lowest
// offset it covers, for callers that must hold back commits while a wake is unacknowledged.
package coalesce

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// MaxEventIDs is how many covered event ids a wake carries at most; the wake's EventCount has
// the total. It matches the Wake record's contract.
const MaxEventIDs = 64

// MaxLinks is how many trace links a wake carries at most: one per covered event whose span was
// sampled (an unsampled span is in no trace backend, so a link to it leads nowhere and is not
// kept). It is far above what a device sees in one interval at any useful sampling ratio, and
// bounds a pending batch at ~24 KiB of links when every event is sampled.
const MaxLinks = 1024

// DefaultDedupSlack is added to the longest interval to make the default DedupWindow.
const DefaultDedupSlack = 30 * time.Second

// Reason is why a wake was decided.
type Reason uint8

// Wake reasons.
const (
	Leading  Reason = iota + 1 // first event after a quiet interval
	Trailing                   // events arrived after the last wake; sent when its interval ended
	Urgent                     // an urgent event bypassed the interval
)

func (r Reason) String() string {
	switch r {
	case Leading:
		return "leading"
	case Trailing:
		return "trailing"
	case Urgent:
		return "urgent"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Outcome is what Event did with an event.
type Outcome uint8

// Event outcomes.
const (
	Woke       Outcome = iota + 1 // a wake covering the event was decided now
	Absorbed                      // the event is pending; a trailing wake will cover it
	Duplicate                     // the event id was seen in the dedup window: nothing changed
	UnknownApp                    // the event's app has no interval configured: nothing changed
)

func (o Outcome) String() string {
	switch o {
	case Woke:
		return "woke"
	case Absorbed:
		return "absorbed"
	case Duplicate:
		return "duplicate"
	case UnknownApp:
		return "unknown app"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// EventInfo is what the engine needs to know about one push event.
type EventInfo struct {
	// ID is the event's unique record id (the dedup key; UUIDs are stored as 16 bytes).
	ID       string
	DeviceID string
	App      string
	// AcceptedAt is when ingest accepted the event; it becomes the wake's first/last event time
	// and, for the first covered event, part of the deterministic wake id.
	AcceptedAt time.Time
	Urgent     bool
	// Offset is the event's offset in its partition.
	Offset int64
	// Link is the trace context the event was created in (may be invalid); a wake links to the
	// contexts of the events it covers.
	Link trace.SpanContext
}

// WakeDecision is one wake to send.
type WakeDecision struct {
	// ID is deterministic: the same device and covered batch (first and last event id, count)
	// give the same id, so a replay that re-derives a wake re-emits its id (see WakeID).
	ID       string
	DeviceID string
	App      string
	Reason   Reason
	// At is when the wake was decided (the now of the call that returned it).
	At time.Time
	// EventCount is the number of covered events; EventIDs holds at most MaxEventIDs of them.
	EventCount int
	EventIDs   []string
	// Links are the span contexts of the covered events that were sampled (at most MaxLinks).
	Links []trace.SpanContext
	// FirstEventAt and LastEventAt are the acceptance times of the oldest and newest covered event.
	FirstEventAt time.Time
	LastEventAt  time.Time
	// Urgent reports whether any covered event was urgent.
	Urgent bool
	// MinOffset is the lowest partition offset of a covered event.
	MinOffset int64
}

// RestoredWake is a wake read back from the wakes topic when a partition is assigned.
type RestoredWake struct {
	DeviceID string
	App      string
	At       time.Time // the wake's created_at
	EventIDs []string
}

// Config configures an Engine.
type Config struct {
	// MinIntervals is the coalescing interval of every app the engine serves. Events of other
	// apps are refused with UnknownApp.
	MinIntervals map[string]time.Duration
	// DedupWindow is how long an event id is remembered. Zero means the longest interval plus
	// DefaultDedupSlack. It must be at least the longest interval.
	DedupWindow time.Duration
}

// MaxInterval returns the longest interval in c (zero without apps).
func (c Config) MaxInterval() time.Duration {
	var m time.Duration
	for _, d := range c.MinIntervals {
		m = max(m, d)
	}
	return m
}

// app is an interned app: devices hold its index in Engine.appList.
type app struct {
	id       string
	interval int64 // ns
	index    uint16
}

// batch is the pending events of a device.
type batch struct {
	ids       []string            // first MaxEventIDs ids
	links     []trace.SpanContext // sampled ones, at most MaxLinks
	count     int
	firstAt   int64
	lastAt    int64
	lastID    string
	minOffset int64
	urgent    bool
}

// mark records that a batch starting at an offset was opened; marks are in offset order, so
// the first live one (still the pending batch of its device) gives the watermark.
type mark struct {
	d int32 // slab index
	b *batch
}

// Engine is the coalescing state of one partition. It is not safe for concurrent use: one
// goroutine owns a partition and its engine. Devices are stored compactly (devices.go).
type Engine struct {
	apps    map[string]*app
	appList []*app
	slab    []device // tracked devices; free slots are listed in free
	free    []int32
	devices deviceTable
	names   map[int32]string // id strings of devices whose ids are not canonical
	pending map[int32]*batch // events absorbed since the device's last wake
	timers  timerHeap
	seen    dedupSet
	marks   []mark
	mhead   int
	round   map[int32]int // Events: devices woken in the current call → index in dst
}

// New returns an empty engine.
func New(cfg Config) (*Engine, error) {
	if len(cfg.MinIntervals) == 0 {
		return nil, errors.New("coalesce: no apps configured")
	}
	if len(cfg.MinIntervals) > math.MaxUint16 {
		return nil, fmt.Errorf("coalesce: %d apps configured, at most %d supported", len(cfg.MinIntervals), math.MaxUint16)
	}
	e := &Engine{
		apps:    make(map[string]*app, len(cfg.MinIntervals)),
		names:   map[int32]string{},
		pending: map[int32]*batch{},
		devices: deviceTable{seed: maphash.MakeSeed()},
	}
	e.timers.slab = &e.slab
	for id, d := range cfg.MinIntervals {
		if d <= 0 {
			return nil, fmt.Errorf("coalesce: app %q: min interval must be > 0, got %v", id, d)
		}
		a := &app{id: id, interval: int64(d), index: uint16(len(e.appList))}
		e.apps[id] = a
		e.appList = append(e.appList, a)
	}
	window := cfg.DedupWindow
	if window == 0 {
		window = cfg.MaxInterval() + DefaultDedupSlack
	}
	if window < cfg.MaxInterval() {
		return nil, fmt.Errorf("coalesce: dedup window %v is shorter than the longest interval %v", window, cfg.MaxInterval())
	}
	e.seen = newDedupSet(window)
	return e, nil
}

// Event applies one event at time now and appends the wakes it causes to dst (at most one).
func (e *Engine) Event(dst []WakeDecision, now time.Time, ev EventInfo) ([]WakeDecision, Outcome) {
	dst, o, _ := e.event(dst, now.UnixNano(), ev, nil)
	return dst, o
}

// Events decides a batch of events at one instant now, as the partition runner does with each
// fetched batch of records: it appends the wakes to dst and each event's outcome to outcomes.
// It is Event for each event in order, with one more rule, because none of the batch's wakes is
// sent yet: an event of a device that was woken earlier in the same call joins that wake
// (outcome Woke) instead of waiting for the next interval. Events that arrive together go out
// together; this matters most after a rebalance, when the replayed events of an interval that
// ended during the handover would otherwise be split into a wake covering the first one and a
// trailing wake a whole interval later.
func (e *Engine) Events(dst []WakeDecision, outcomes []Outcome, now time.Time, evs []EventInfo) ([]WakeDecision, []Outcome) {
	if e.round == nil {
		e.round = map[int32]int{}
	}
	clear(e.round)
	t := now.UnixNano()
	for _, ev := range evs {
		var o Outcome
		var d int32
		n := len(dst)
		dst, o, d = e.event(dst, t, ev, e.round)
		if len(dst) > n { // a new wake (not a join)
			e.round[d] = len(dst) - 1
		}
		outcomes = append(outcomes, o)
	}
	clear(e.round)
	return dst, outcomes
}

// event is Event at t (ns). With round (device → index in dst of a wake decided in this call),
// an event of a device in round joins that wake. It returns the device's slab index when the
// outcome is Woke.
func (e *Engine) event(dst []WakeDecision, t int64, ev EventInfo, round map[int32]int) ([]WakeDecision, Outcome, int32) {
	a := e.apps[ev.App]
	if a == nil {
		return dst, UnknownApp, -1
	}
	e.seen.expire(t)
	if !e.seen.add(eventKey(ev.ID), t) {
		return dst, Duplicate, -1
	}
	k, canonical := deviceKey(ev.DeviceID)
	d := e.devices.get(e.slab, &k)
	if d < 0 {
		// Not tracked: no wake in the last interval.
		d = e.track(k, canonical, ev.DeviceID, a)
		reason := Leading
		if ev.Urgent {
			reason = Urgent
		}
		return append(dst, e.wakeOne(d, t, reason, ev)), Woke, d
	}
	if i, ok := round[d]; ok {
		join(&dst[i], ev)
		return dst, Woke, d
	}
	e.slab[d].app = a.index
	switch {
	case ev.Urgent:
		return append(dst, e.wakeWith(d, t, Urgent, ev)), Woke, d
	case t >= e.slab[d].deadline && e.pending[d] != nil:
		return append(dst, e.wakeWith(d, t, Trailing, ev)), Woke, d
	case t >= e.slab[d].deadline:
		return append(dst, e.wakeOne(d, t, Leading, ev)), Woke, d
	default:
		e.absorb(d, ev)
		return dst, Absorbed, -1
	}
}

// join adds ev to w, a wake decided but not sent yet, and re-derives its id.
func join(w *WakeDecision, ev EventInfo) {
	w.EventCount++
	if len(w.EventIDs) < MaxEventIDs {
		w.EventIDs = append(w.EventIDs, ev.ID)
	}
	if ev.Link.IsSampled() && len(w.Links) < MaxLinks {
		w.Links = append(w.Links, ev.Link)
	}
	w.LastEventAt = ev.AcceptedAt
	w.Urgent = w.Urgent || ev.Urgent
	w.MinOffset = min(w.MinOffset, ev.Offset)
	w.ID = WakeID(w.DeviceID, w.EventIDs[0], ev.ID, w.EventCount, w.FirstEventAt.UnixNano())
}

// Due appends the trailing wakes whose time has come at now, and forgets devices whose
// interval ended with nothing pending.
func (e *Engine) Due(dst []WakeDecision, now time.Time) []WakeDecision {
	t := now.UnixNano()
	e.seen.expire(t)
	for e.timers.len() > 0 && e.slab[e.timers.top()].deadline <= t {
		d := e.timers.top()
		if e.pending[d] != nil {
			dst = append(dst, e.emit(d, t, Trailing)) // moves d's timer to t + interval
			continue
		}
		e.untrack(d)
	}
	return dst
}

// track starts tracking a device (not tracked yet) and returns its slab index. Its timer is set
// by the wake or restore that follows.
func (e *Engine) track(k dkey, canonical bool, id string, a *app) int32 {
	var d int32
	if n := len(e.free); n > 0 {
		d = e.free[n-1]
		e.free = e.free[:n-1]
	} else {
		if len(e.slab) >= math.MaxInt32-1 {
			panic("coalesce: too many tracked devices")
		}
		e.slab = append(e.slab, device{})
		d = int32(len(e.slab) - 1)
	}
	e.slab[d] = device{key: k, hidx: -1, app: a.index}
	if !canonical {
		e.slab[d].flags |= fHashed
		e.names[d] = id
	}
	e.devices.put(e.slab, d)
	return d
}

// untrack forgets a device without pending events.
func (e *Engine) untrack(d int32) {
	if e.slab[d].hidx >= 0 {
		e.timers.remove(d)
	}
	e.devices.del(e.slab, d)
	if e.slab[d].flags&fHashed != 0 {
		delete(e.names, d)
	}
	e.slab[d] = device{hidx: -1}
	e.free = append(e.free, d)
}

// deviceID returns the id string of tracked device d.
func (e *Engine) deviceID(d int32) string {
	if e.slab[d].flags&fHashed != 0 {
		return e.names[d]
	}
	return hex.EncodeToString(e.slab[d].key[:])
}

// NextDeadline returns when Due next has work: the earliest device timer.
func (e *Engine) NextDeadline() (time.Time, bool) {
	if e.timers.len() == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, e.slab[e.timers.top()].deadline), true
}

// Restore applies a wake read back from the wakes topic (at partition assignment, before any
// event): the device's timer moves to w.At + its app's interval if that is later, and the
// covered event ids count as seen. A wake whose interval already ended at now only contributes
// its event ids.
func (e *Engine) Restore(now time.Time, w RestoredWake) {
	t := now.UnixNano()
	e.seen.expire(t)
	for _, id := range w.EventIDs {
		e.seen.add(eventKey(id), t)
	}
	a := e.apps[w.App]
	if a == nil {
		return
	}
	at := w.At.UnixNano()
	if at+a.interval <= t {
		return
	}
	k, canonical := deviceKey(w.DeviceID)
	d := e.devices.get(e.slab, &k)
	if d < 0 {
		d = e.track(k, canonical, w.DeviceID, a)
	} else if at+a.interval <= e.slab[d].deadline {
		return
	}
	e.slab[d].app = a.index
	e.slab[d].deadline = at + a.interval
	e.timers.set(d)
}

// Watermark returns the lowest offset of a pending event, or next when nothing is pending.
// next is the offset after the last event given to Event.
func (e *Engine) Watermark(next int64) int64 {
	for e.mhead < len(e.marks) {
		m := e.marks[e.mhead]
		if e.pending[m.d] == m.b {
			return min(m.b.minOffset, next)
		}
		e.marks[e.mhead] = mark{}
		e.mhead++
	}
	e.marks, e.mhead = e.marks[:0], 0
	return next
}

// Devices returns the number of tracked devices (with a wake in the last interval).
func (e *Engine) Devices() int { return e.devices.n }

// Pending returns the number of devices with a pending trailing wake.
func (e *Engine) Pending() int { return len(e.pending) }

// SeenIDs returns the number of event ids in the dedup window.
func (e *Engine) SeenIDs() int { return len(e.seen.keys) }

// absorb adds ev to d's pending batch.
func (e *Engine) absorb(d int32, ev EventInfo) {
	b := e.pending[d]
	if b == nil {
		b = &batch{ids: make([]string, 0, 4), firstAt: ev.AcceptedAt.UnixNano(), minOffset: ev.Offset}
		e.pending[d] = b
		e.addMark(d, b)
	}
	b.count++
	if len(b.ids) < MaxEventIDs {
		b.ids = append(b.ids, ev.ID)
	}
	if ev.Link.IsSampled() && len(b.links) < MaxLinks {
		b.links = append(b.links, ev.Link)
	}
	b.lastAt = ev.AcceptedAt.UnixNano()
	b.lastID = ev.ID
	b.minOffset = min(b.minOffset, ev.Offset)
	b.urgent = b.urgent || ev.Urgent
}

func (e *Engine) addMark(d int32, b *batch) {
	if e.mhead > 1024 && e.mhead > len(e.marks)/2 {
		n := copy(e.marks, e.marks[e.mhead:])
		clear(e.marks[n:])
		e.marks, e.mhead = e.marks[:n], 0
	}
	e.marks = append(e.marks, mark{d: d, b: b})
}

// wakeWith adds ev to d's batch and emits the batch.
func (e *Engine) wakeWith(d int32, t int64, r Reason, ev EventInfo) WakeDecision {
	e.absorb(d, ev)
	return e.emit(d, t, r)
}

// emit turns d's pending batch into a wake decided at t and restarts d's interval.
func (e *Engine) emit(d int32, t int64, r Reason) WakeDecision {
	b := e.pending[d]
	delete(e.pending, d)
	e.restart(d, t)
	id := e.deviceID(d)
	return WakeDecision{
		ID:           WakeID(id, b.ids[0], b.lastID, b.count, b.firstAt),
		DeviceID:     id,
		App:          e.appList[e.slab[d].app].id,
		Reason:       r,
		At:           time.Unix(0, t),
		EventCount:   b.count,
		EventIDs:     b.ids,
		Links:        b.links,
		FirstEventAt: time.Unix(0, b.firstAt),
		LastEventAt:  time.Unix(0, b.lastAt),
		Urgent:       b.urgent,
		MinOffset:    b.minOffset,
	}
}

// wakeOne emits a wake covering ev alone (d has no pending batch).
func (e *Engine) wakeOne(d int32, t int64, r Reason, ev EventInfo) WakeDecision {
	e.restart(d, t)
	at := ev.AcceptedAt.UnixNano()
	w := WakeDecision{
		ID:           WakeID(ev.DeviceID, ev.ID, ev.ID, 1, at),
		DeviceID:     ev.DeviceID,
		App:          e.appList[e.slab[d].app].id,
		Reason:       r,
		At:           time.Unix(0, t),
		EventCount:   1,
		EventIDs:     []string{ev.ID},
		FirstEventAt: time.Unix(0, at),
		LastEventAt:  time.Unix(0, at),
		Urgent:       ev.Urgent,
		MinOffset:    ev.Offset,
	}
	if ev.Link.IsSampled() {
		w.Links = []trace.SpanContext{ev.Link}
	}
	return w
}

// restart records a wake of d at t: its next timer is at t + interval.
func (e *Engine) restart(d int32, t int64) {
	dv := &e.slab[d]
	if iv := e.appList[dv.app].interval; iv > math.MaxInt64-t {
		dv.deadline = math.MaxInt64
	} else {
		dv.deadline = t + iv
	}
	e.timers.set(d)
}
