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
// wake (and a new timer) or is dropped. A tracked device without pending events costs one map
// entry, one heap slot and a 64-byte struct plus its id string; pending events add a batch that
// keeps at most MaxEventIDs ids and trace links. Seen event ids live in a per-partition set of
// 16-byte keys that expire after DedupWindow.
//
// # Offsets
//
// Events must be given in partition offset order. Watermark returns the lowest offset of an event
// that is pending (absorbed, not yet covered by an emitted wake): the consumer may commit up to it
// once the wakes emitted so far are acknowledged. Each WakeDecision carries MinOffset, the lowest
// offset it covers, for callers that must hold back commits while a wake is unacknowledged.
package coalesce

import (
	"errors"
	"fmt"
	"math"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// MaxEventIDs is how many covered event ids (and trace links) a wake carries at most; the wake's
// EventCount has the total. It matches the Wake record's contract.
const MaxEventIDs = 64

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
	// EventCount is the number of covered events; EventIDs and Links hold at most MaxEventIDs.
	EventCount int
	EventIDs   []string
	Links      []trace.SpanContext
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

// app is an interned app: devices point at it instead of holding a string each.
type app struct {
	id       string
	interval int64 // ns
}

// device is the state of one tracked device.
type device struct {
	id       string
	app      *app
	lastWake int64  // ns since the Unix epoch: when the last wake (of any reason) was decided
	deadline int64  // lastWake + app.interval: the device's single timer
	hidx     int    // index in the timer heap
	batch    *batch // events absorbed since the last wake; nil when none
}

// batch is the pending events of a device.
type batch struct {
	ids       []string // first MaxEventIDs ids
	links     []trace.SpanContext
	count     int
	firstAt   int64
	lastAt    int64
	lastID    string
	minOffset int64
	urgent    bool
}

// mark records that a batch starting at an offset was opened; marks are in offset order, so
// the first live one gives the watermark.
type mark struct {
	d *device
	b *batch
}

// Engine is the coalescing state of one partition. It is not safe for concurrent use: one
// goroutine owns a partition and its engine.
type Engine struct {
	apps    map[string]*app
	devices map[string]*device
	timers  timerHeap
	seen    dedupSet
	marks   []mark
	mhead   int
	pending int
}

// New returns an empty engine.
func New(cfg Config) (*Engine, error) {
	if len(cfg.MinIntervals) == 0 {
		return nil, errors.New("coalesce: no apps configured")
	}
	e := &Engine{apps: make(map[string]*app, len(cfg.MinIntervals)), devices: map[string]*device{}}
	for id, d := range cfg.MinIntervals {
		if d <= 0 {
			return nil, fmt.Errorf("coalesce: app %q: min interval must be > 0, got %v", id, d)
		}
		e.apps[id] = &app{id: id, interval: int64(d)}
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
	a := e.apps[ev.App]
	if a == nil {
		return dst, UnknownApp
	}
	t := now.UnixNano()
	e.seen.expire(t)
	if !e.seen.add(eventKey(ev.ID), t) {
		return dst, Duplicate
	}
	d := e.devices[ev.DeviceID]
	if d == nil {
		// Not tracked: no wake in the last interval.
		d = &device{id: ev.DeviceID, app: a, hidx: -1}
		e.devices[d.id] = d
		reason := Leading
		if ev.Urgent {
			reason = Urgent
		}
		return append(dst, e.wakeOne(d, t, reason, ev)), Woke
	}
	d.app = a
	switch {
	case ev.Urgent:
		return append(dst, e.wakeWith(d, t, Urgent, ev)), Woke
	case t >= d.deadline && d.batch != nil:
		return append(dst, e.wakeWith(d, t, Trailing, ev)), Woke
	case t >= d.deadline:
		return append(dst, e.wakeOne(d, t, Leading, ev)), Woke
	default:
		e.absorb(d, ev)
		return dst, Absorbed
	}
}

// Due appends the trailing wakes whose time has come at now, and forgets devices whose
// interval ended with nothing pending.
func (e *Engine) Due(dst []WakeDecision, now time.Time) []WakeDecision {
	t := now.UnixNano()
	e.seen.expire(t)
	for len(e.timers) > 0 && e.timers[0].deadline <= t {
		d := e.timers[0]
		if d.batch != nil {
			dst = append(dst, e.emit(d, t, Trailing)) // moves d's timer to t + interval
			continue
		}
		e.timers.remove(d)
		delete(e.devices, d.id)
	}
	return dst
}

// NextDeadline returns when Due next has work: the earliest device timer.
func (e *Engine) NextDeadline() (time.Time, bool) {
	if len(e.timers) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, e.timers[0].deadline), true
}

// Restore applies a wake read back from the wakes topic (at partition assignment, before any
// event): the device's last wake time moves to w.At if that is later, and the covered event ids
// count as seen. A wake whose interval already ended at now only contributes its event ids.
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
	d := e.devices[w.DeviceID]
	if d == nil {
		d = &device{id: w.DeviceID, app: a, hidx: -1}
		e.devices[d.id] = d
	} else if at <= d.lastWake {
		return
	}
	d.app = a
	d.lastWake = at
	d.deadline = at + a.interval
	e.timers.set(d)
}

// Watermark returns the lowest offset of a pending event, or next when nothing is pending.
// next is the offset after the last event given to Event.
func (e *Engine) Watermark(next int64) int64 {
	for e.mhead < len(e.marks) {
		m := e.marks[e.mhead]
		if m.d.batch == m.b {
			return min(m.b.minOffset, next)
		}
		e.marks[e.mhead] = mark{}
		e.mhead++
	}
	e.marks, e.mhead = e.marks[:0], 0
	return next
}

// Devices returns the number of tracked devices (with a wake in the last interval).
func (e *Engine) Devices() int { return len(e.devices) }

// Pending returns the number of devices with a pending trailing wake.
func (e *Engine) Pending() int { return e.pending }

// SeenIDs returns the number of event ids in the dedup window.
func (e *Engine) SeenIDs() int { return len(e.seen.keys) }

// absorb adds ev to d's pending batch.
func (e *Engine) absorb(d *device, ev EventInfo) {
	b := d.batch
	if b == nil {
		b = &batch{ids: make([]string, 0, 4), firstAt: ev.AcceptedAt.UnixNano(), minOffset: ev.Offset}
		d.batch = b
		e.pending++
		e.addMark(d, b)
	}
	b.count++
	if len(b.ids) < MaxEventIDs {
		b.ids = append(b.ids, ev.ID)
		if ev.Link.IsValid() {
			b.links = append(b.links, ev.Link)
		}
	}
	b.lastAt = ev.AcceptedAt.UnixNano()
	b.lastID = ev.ID
	b.minOffset = min(b.minOffset, ev.Offset)
	b.urgent = b.urgent || ev.Urgent
}

func (e *Engine) addMark(d *device, b *batch) {
	if e.mhead > 1024 && e.mhead > len(e.marks)/2 {
		n := copy(e.marks, e.marks[e.mhead:])
		clear(e.marks[n:])
		e.marks, e.mhead = e.marks[:n], 0
	}
	e.marks = append(e.marks, mark{d: d, b: b})
}

// wakeWith adds ev to d's batch and emits the batch.
func (e *Engine) wakeWith(d *device, t int64, r Reason, ev EventInfo) WakeDecision {
	e.absorb(d, ev)
	return e.emit(d, t, r)
}

// emit turns d's pending batch into a wake decided at t and restarts d's interval.
func (e *Engine) emit(d *device, t int64, r Reason) WakeDecision {
	b := d.batch
	d.batch = nil
	e.pending--
	e.restart(d, t)
	return WakeDecision{
		ID:           WakeID(d.id, b.ids[0], b.lastID, b.count, b.firstAt),
		DeviceID:     d.id,
		App:          d.app.id,
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
func (e *Engine) wakeOne(d *device, t int64, r Reason, ev EventInfo) WakeDecision {
	e.restart(d, t)
	at := ev.AcceptedAt.UnixNano()
	w := WakeDecision{
		ID:           WakeID(d.id, ev.ID, ev.ID, 1, at),
		DeviceID:     d.id,
		App:          d.app.id,
		Reason:       r,
		At:           time.Unix(0, t),
		EventCount:   1,
		EventIDs:     []string{ev.ID},
		FirstEventAt: time.Unix(0, at),
		LastEventAt:  time.Unix(0, at),
		Urgent:       ev.Urgent,
		MinOffset:    ev.Offset,
	}
	if ev.Link.IsValid() {
		w.Links = []trace.SpanContext{ev.Link}
	}
	return w
}

// restart records a wake of d at t: its next timer is at t + interval.
func (e *Engine) restart(d *device, t int64) {
	d.lastWake = t
	if d.app.interval > math.MaxInt64-t {
		d.deadline = math.MaxInt64
	} else {
		d.deadline = t + d.app.interval
	}
	e.timers.set(d)
}
