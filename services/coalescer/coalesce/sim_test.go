package coalesce

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// simEvent is one input of a simulated stream.
type simEvent struct {
	t time.Time
	// accepted is the event's accepted_at (crash simulation; the other simulations use t).
	accepted time.Time
	id       string
	device   string
	app      string
	urgent   bool
	offset   int64
}

var simIntervals = map[string]time.Duration{"fast": 700 * time.Millisecond, "slow": 2 * time.Second}

const simWindow = 10 * time.Second

// randomStream returns a stream of n events over a few devices: bursts, quiet gaps, urgent
// events and re-deliveries of earlier ids.
func randomStream(r *rand.Rand, n int) []simEvent {
	devices := 1 + r.IntN(12)
	apps := make([]string, devices)
	for i := range apps {
		apps[i] = []string{"fast", "slow"}[r.IntN(2)]
	}
	var out, originals []simEvent
	now := t0
	for i := 0; len(out) < n; i++ {
		switch r.IntN(10) {
		case 0:
			now = now.Add(time.Duration(r.IntN(4000)) * time.Millisecond) // quiet gap
		case 1, 2:
			// same instant
		default:
			now = now.Add(time.Duration(r.IntN(300)) * time.Millisecond)
		}
		if len(originals) > 0 && r.IntN(10) == 0 {
			// Re-delivery (producer retry, replay) of a recent event, inside the dedup window.
			prev := originals[len(originals)-1-r.IntN(min(len(originals), 20))]
			if now.Sub(prev.t) < simWindow/2 {
				prev.t, prev.offset = now, int64(len(out))
				out = append(out, prev)
				continue
			}
		}
		d := r.IntN(devices)
		dev := fmt.Sprintf("dev-%d", d) // stored hashed, with its id string
		if d%2 == 0 {
			dev = fmt.Sprintf("%032x", d+1) // canonical: stored as 16 bytes, the id rebuilt
		}
		ev := simEvent{
			t: now, id: fmt.Sprintf("ev-%d", i), device: dev, app: apps[d],
			urgent: r.IntN(25) == 0, offset: int64(len(out)),
		}
		originals = append(originals, ev)
		out = append(out, ev)
	}
	return out
}

// refWake is a wake as the reference model and the checks see it.
type refWake struct {
	at     time.Duration // since t0
	reason Reason
	ids    string
}

func (w refWake) String() string {
	return fmt.Sprintf("%v %s [%s]", w.at, w.reason, w.ids)
}

// reference is a deliberately naive model of DESIGN §5: per device a last-wake time and a list
// of pending ids, a map of every id ever seen, and a linear scan for due trailing wakes.
type reference struct {
	window  time.Duration
	seen    map[string]time.Time
	last    map[string]time.Time
	pending map[string][]string
	app     map[string]string
	wakes   map[string][]refWake
	// round, when not nil, is the devices woken by events of the current batch (Engine.Events):
	// their later events in the batch join that wake.
	round map[string]bool
}

func newReference(window time.Duration) *reference {
	return &reference{window: window, seen: map[string]time.Time{}, last: map[string]time.Time{},
		pending: map[string][]string{}, app: map[string]string{}, wakes: map[string][]refWake{}}
}

func (m *reference) wake(dev string, at time.Time, r Reason, ids []string) {
	m.wakes[dev] = append(m.wakes[dev], refWake{at.Sub(t0), r, strings.Join(ids, ",")})
	m.last[dev] = at
	delete(m.pending, dev)
}

// due emits every trailing wake whose deadline is at or before t, each at its deadline.
func (m *reference) due(t time.Time) {
	for {
		var dev string
		var deadline time.Time
		for d, ids := range m.pending {
			dl := m.last[d].Add(simIntervals[m.app[d]])
			if len(ids) > 0 && !dl.After(t) && (dev == "" || dl.Before(deadline)) {
				dev, deadline = d, dl
			}
		}
		if dev == "" {
			return
		}
		m.wake(dev, deadline, Trailing, m.pending[dev])
	}
}

func (m *reference) event(ev simEvent) {
	m.due(ev.t)
	if first, ok := m.seen[ev.id]; ok && ev.t.Sub(first) < m.window {
		return
	}
	m.seen[ev.id] = ev.t
	if m.round[ev.device] {
		ws := m.wakes[ev.device]
		ws[len(ws)-1].ids += "," + ev.id
		return
	}
	m.app[ev.device] = ev.app
	if m.round != nil {
		defer func() {
			if l, ok := m.last[ev.device]; ok && l.Equal(ev.t) && len(m.pending[ev.device]) == 0 {
				m.round[ev.device] = true
			}
		}()
	}
	last, woken := m.last[ev.device]
	quiet := !woken || !ev.t.Before(last.Add(simIntervals[ev.app]))
	switch {
	case ev.urgent:
		m.wake(ev.device, ev.t, Urgent, append(m.pending[ev.device], ev.id))
	case quiet:
		m.wake(ev.device, ev.t, Leading, []string{ev.id})
	default:
		m.pending[ev.device] = append(m.pending[ev.device], ev.id)
	}
}

func TestSimulationAgainstReference(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 50
	}
	for seed := range runs {
		r := rand.New(rand.NewPCG(uint64(seed), 42))
		stream := randomStream(r, 50+r.IntN(400))
		if err := simulate(stream, nil, seed%2 == 1); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// TestSimulationLateTimers drives Due up to maxLag late (a busy partition), so events also meet
// overdue trailing wakes. Without exact timing there is no reference to compare with; the
// invariants are checked with the lag added to their bounds.
func TestSimulationLateTimers(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 50
	}
	for seed := range runs {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		stream := randomStream(r, 50+r.IntN(400))
		if err := simulate(stream, r, seed%2 == 1); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

const maxLag = 100 * time.Millisecond

// simulate runs stream through an Engine and checks the wakes against the invariants of
// DESIGN §5. With lag nil, Due is called exactly at every deadline and the wakes must equal the
// reference model's; otherwise each Due call comes a random 0..maxLag late (or not before the
// next event). With batched, events at the same instant are decided by one Events call.
func simulate(stream []simEvent, lag *rand.Rand, batched bool) error {
	var slack time.Duration // how late a timer may fire
	if lag != nil {
		slack = maxLag
	}
	window := simWindow
	e, err := New(Config{MinIntervals: simIntervals, DedupWindow: window})
	if err != nil {
		return err
	}
	ref := newReference(window)

	var wakes []WakeDecision
	covered := map[string]WakeDecision{} // event id -> the wake that covered it
	accepted := map[string]simEvent{}    // first delivery of every id accepted by the engine
	var order []string                   // accepted ids in offset order
	checkWatermark := func(next int64) error {
		want := next
		for _, id := range order {
			if _, ok := covered[id]; !ok {
				want = min(want, accepted[id].offset)
				break
			}
		}
		if got := e.Watermark(next); got != want {
			return fmt.Errorf("watermark %d, want %d", got, want)
		}
		return nil
	}
	record := func(ws []WakeDecision) error {
		for _, w := range ws {
			if w.EventCount < 1 || len(w.EventIDs) != min(w.EventCount, MaxEventIDs) {
				return fmt.Errorf("wake %s covers %d events with %d ids", w.ID, w.EventCount, len(w.EventIDs))
			}
			for _, id := range w.EventIDs {
				if prev, dup := covered[id]; dup {
					return fmt.Errorf("event %s covered twice: by %s and %s", id, prev.ID, w.ID)
				}
				covered[id] = w
			}
			wakes = append(wakes, w)
		}
		return nil
	}
	drain := func(until time.Time) error {
		for {
			d, ok := e.NextDeadline()
			if lag != nil {
				d = d.Add(time.Duration(lag.Int64N(int64(maxLag) + 1)))
			}
			if !ok || d.After(until) {
				return nil
			}
			if err := record(e.Due(nil, d)); err != nil {
				return err
			}
		}
	}
	for i := 0; i < len(stream); {
		// One Event call per event, or (batched) one Events call per run of events at the
		// same instant, as the runner decides a fetched batch.
		j := i + 1
		for batched && j < len(stream) && stream[j].t.Equal(stream[i].t) {
			j++
		}
		group, now := stream[i:j], stream[i].t
		if err := drain(now); err != nil {
			return err
		}
		infos := make([]EventInfo, len(group))
		for k, ev := range group {
			infos[k] = EventInfo{ID: ev.id, DeviceID: ev.device, App: ev.app, AcceptedAt: ev.t, Urgent: ev.urgent, Offset: ev.offset}
		}
		var ws []WakeDecision
		var outs []Outcome
		if batched {
			ws, outs = e.Events(nil, nil, now, infos)
			ref.round = map[string]bool{}
		} else {
			var o Outcome
			ws, o = e.Event(nil, now, infos[0])
			outs = []Outcome{o}
		}
		woke := 0
		for k, ev := range group {
			if outs[k] != Duplicate {
				if _, again := accepted[ev.id]; again {
					return fmt.Errorf("event %s accepted twice", ev.id)
				}
				accepted[ev.id] = ev
				order = append(order, ev.id)
			}
			if outs[k] == Woke {
				woke++
			}
			ref.event(ev)
		}
		ref.round = nil
		if err := record(ws); err != nil {
			return err
		}
		if len(ws) > woke || (len(ws) > 0) != (woke > 0) {
			return fmt.Errorf("%d events woke with %d wakes", woke, len(ws))
		}
		if err := checkWatermark(int64(j)); err != nil {
			return fmt.Errorf("after event %d: %w", j-1, err)
		}
		i = j
	}
	end := stream[len(stream)-1].t.Add(time.Minute)
	if err := drain(end); err != nil {
		return err
	}
	ref.due(end)
	if err := checkWatermark(int64(len(stream))); err != nil {
		return fmt.Errorf("at the end: %w", err)
	}
	if e.Devices() != 0 || e.Pending() != 0 {
		return fmt.Errorf("%d devices (%d pending) still tracked after all intervals ended", e.Devices(), e.Pending())
	}

	// No loss: every accepted event is covered, at or after it was processed, within its interval.
	for id, ev := range accepted {
		w, ok := covered[id]
		if !ok {
			return fmt.Errorf("event %s (%s at %v) was never covered", id, ev.device, ev.t.Sub(t0))
		}
		if w.At.Before(ev.t) || w.At.After(ev.t.Add(simIntervals[ev.app]+slack)) {
			return fmt.Errorf("event %s at %v covered by a wake at %v", id, ev.t.Sub(t0), w.At.Sub(t0))
		}
	}
	byDevice := map[string][]WakeDecision{}
	for _, w := range wakes {
		byDevice[w.DeviceID] = append(byDevice[w.DeviceID], w)
	}
	for dev, ws := range byDevice {
		interval := simIntervals[ws[0].App]
		var lastAny, lastNonUrgent time.Time
		for i, w := range ws {
			// Rate: non-urgent wakes at least an interval apart.
			if w.Reason != Urgent && i > 0 && !lastNonUrgent.IsZero() && w.At.Sub(lastNonUrgent) < interval {
				return fmt.Errorf("%s: non-urgent wakes %v apart (interval %v)", dev, w.At.Sub(lastNonUrgent), interval)
			}
			// Minimality: a leading wake only after a quiet interval, a trailing one exactly when
			// the interval of the previous wake ended.
			switch w.Reason {
			case Leading:
				if i > 0 && w.At.Sub(lastAny) < interval {
					return fmt.Errorf("%s: leading wake %v after the previous one", dev, w.At.Sub(lastAny))
				}
			case Trailing:
				if i == 0 || w.At.Before(lastAny.Add(interval)) || w.At.After(lastAny.Add(interval+slack)) {
					return fmt.Errorf("%s: trailing wake at %v, previous wake at %v", dev, w.At.Sub(t0), lastAny.Sub(t0))
				}
			}
			lastAny = w.At
			if w.Reason != Urgent {
				lastNonUrgent = w.At
			}
		}
		if lag != nil {
			continue
		}
		// Same wakes as the reference model.
		var got []refWake
		for _, w := range ws {
			got = append(got, refWake{w.At.Sub(t0), w.Reason, strings.Join(w.EventIDs, ",")})
		}
		if want := ref.wakes[dev]; !slices.Equal(got, want) {
			return fmt.Errorf("%s:\n got %v\nwant %v", dev, got, want)
		}
	}
	for dev := range ref.wakes {
		if lag != nil {
			break
		}
		if _, ok := byDevice[dev]; !ok {
			return fmt.Errorf("%s: reference woke it, engine did not", dev)
		}
	}
	return nil
}
