package coalesce

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// step is one input of a scripted test: an event at T, or (ID == "") a Due call at T.
type step struct {
	T      int // ms after t0
	ID     string
	Device string
	App    string
	Urgent bool
}

// want is one expected wake, written compactly.
type want struct {
	T      int
	Device string
	Reason Reason
	IDs    string // comma-separated covered ids
}

func (w want) String() string {
	return fmt.Sprintf("%dms %s %s [%s]", w.T, w.Device, w.Reason, w.IDs)
}

func got(d WakeDecision) want {
	return want{T: int(d.At.Sub(t0) / time.Millisecond), Device: d.DeviceID, Reason: d.Reason, IDs: strings.Join(d.EventIDs, ",")}
}

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := New(Config{MinIntervals: map[string]time.Duration{"a": time.Second, "b": 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEngineRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
		want  []want
		// outcomes of the event steps, in order ("" to skip the check)
		outcomes []Outcome
	}{
		{
			name:     "leading edge wakes now",
			steps:    []step{{T: 0, ID: "e1", Device: "d1"}},
			want:     []want{{0, "d1", Leading, "e1"}},
			outcomes: []Outcome{Woke},
		},
		{
			name:     "events inside the interval are absorbed, trailing at last wake + interval",
			steps:    []step{{T: 0, ID: "e1", Device: "d1"}, {T: 100, ID: "e2", Device: "d1"}, {T: 900, ID: "e3", Device: "d1"}, {T: 1000}},
			want:     []want{{0, "d1", Leading, "e1"}, {1000, "d1", Trailing, "e2,e3"}},
			outcomes: []Outcome{Woke, Absorbed, Absorbed},
		},
		{
			name:  "no trailing wake when nothing arrived after the last wake",
			steps: []step{{T: 0, ID: "e1", Device: "d1"}, {T: 1000}, {T: 5000}},
			want:  []want{{0, "d1", Leading, "e1"}},
		},
		{
			name:  "an event after a quiet interval is a new leading edge",
			steps: []step{{T: 0, ID: "e1", Device: "d1"}, {T: 1000}, {T: 1500, ID: "e2", Device: "d1"}},
			want:  []want{{0, "d1", Leading, "e1"}, {1500, "d1", Leading, "e2"}},
		},
		{
			name:  "exactly one interval later is a leading edge",
			steps: []step{{T: 0, ID: "e1", Device: "d1"}, {T: 1000, ID: "e2", Device: "d1"}},
			want:  []want{{0, "d1", Leading, "e1"}, {1000, "d1", Leading, "e2"}},
		},
		{
			name: "a trailing wake starts a new interval: later events wait for it",
			steps: []step{
				{T: 0, ID: "e1", Device: "d1"}, {T: 500, ID: "e2", Device: "d1"}, {T: 1000},
				{T: 1200, ID: "e3", Device: "d1"}, {T: 2000}, {T: 3000},
			},
			want: []want{{0, "d1", Leading, "e1"}, {1000, "d1", Trailing, "e2"}, {2000, "d1", Trailing, "e3"}},
		},
		{
			name:     "urgent bypasses the interval and covers the pending events",
			steps:    []step{{T: 0, ID: "e1", Device: "d1"}, {T: 100, ID: "e2", Device: "d1"}, {T: 200, ID: "call", Device: "d1", Urgent: true}, {T: 1000}, {T: 1200}},
			want:     []want{{0, "d1", Leading, "e1"}, {200, "d1", Urgent, "e2,call"}},
			outcomes: []Outcome{Woke, Absorbed, Woke},
		},
		{
			name: "after an urgent wake, non-urgent events wait an interval from it",
			steps: []step{
				{T: 0, ID: "e1", Device: "d1"}, {T: 200, ID: "call", Device: "d1", Urgent: true},
				{T: 300, ID: "e2", Device: "d1"}, {T: 1000}, {T: 1200},
			},
			want: []want{{0, "d1", Leading, "e1"}, {200, "d1", Urgent, "call"}, {1200, "d1", Trailing, "e2"}},
		},
		{
			name:  "urgent events always wake, even back to back",
			steps: []step{{T: 0, ID: "c1", Device: "d1", Urgent: true}, {T: 10, ID: "c2", Device: "d1", Urgent: true}},
			want:  []want{{0, "d1", Urgent, "c1"}, {10, "d1", Urgent, "c2"}},
		},
		{
			name: "a duplicate event id changes nothing",
			steps: []step{
				{T: 0, ID: "e1", Device: "d1"}, {T: 100, ID: "e1", Device: "d1"}, {T: 1000},
				{T: 1100, ID: "e2", Device: "d1"}, {T: 1200, ID: "e2", Device: "d1"}, {T: 1300, ID: "e1", Device: "d1"},
				{T: 2100},
			},
			want:     []want{{0, "d1", Leading, "e1"}, {1100, "d1", Leading, "e2"}},
			outcomes: []Outcome{Woke, Duplicate, Woke, Duplicate, Duplicate},
		},
		{
			name:     "a duplicate of a pending event is not counted twice",
			steps:    []step{{T: 0, ID: "e1", Device: "d1"}, {T: 100, ID: "e2", Device: "d1"}, {T: 200, ID: "e2", Device: "d1"}, {T: 1000}},
			want:     []want{{0, "d1", Leading, "e1"}, {1000, "d1", Trailing, "e2"}},
			outcomes: []Outcome{Woke, Absorbed, Duplicate},
		},
		{
			name: "two devices are independent",
			steps: []step{
				{T: 0, ID: "e1", Device: "d1"}, {T: 100, ID: "e2", Device: "d2"}, {T: 200, ID: "e3", Device: "d1"},
				{T: 300, ID: "e4", Device: "d2"}, {T: 1000}, {T: 1100},
			},
			want: []want{{0, "d1", Leading, "e1"}, {100, "d2", Leading, "e2"}, {1000, "d1", Trailing, "e3"}, {1100, "d2", Trailing, "e4"}},
		},
		{
			name: "the interval is per app",
			steps: []step{
				{T: 0, ID: "e1", Device: "d1", App: "b"}, {T: 1500, ID: "e2", Device: "d1", App: "b"},
				{T: 2000}, {T: 3000},
			},
			want: []want{{0, "d1", Leading, "e1"}, {3000, "d1", Trailing, "e2"}},
		},
		{
			name: "an overdue trailing wake takes the new event along",
			steps: []step{
				{T: 0, ID: "e1", Device: "d1"}, {T: 500, ID: "e2", Device: "d1"},
				{T: 1500, ID: "e3", Device: "d1"}, // Due(1000) was never called
			},
			want:     []want{{0, "d1", Leading, "e1"}, {1500, "d1", Trailing, "e2,e3"}},
			outcomes: []Outcome{Woke, Absorbed, Woke},
		},
		{
			name:     "an unknown app is refused",
			steps:    []step{{T: 0, ID: "e1", Device: "d1", App: "nope"}},
			outcomes: []Outcome{UnknownApp},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newTestEngine(t)
			var wakes []WakeDecision
			var outcomes []Outcome
			for _, s := range tc.steps {
				if s.ID == "" {
					wakes = e.Due(wakes, at(s.T))
					continue
				}
				app := s.App
				if app == "" {
					app = "a"
				}
				var o Outcome
				wakes, o = e.Event(wakes, at(s.T), EventInfo{ID: s.ID, DeviceID: s.Device, App: app, AcceptedAt: at(s.T), Urgent: s.Urgent})
				outcomes = append(outcomes, o)
			}
			var gotWakes []want
			for _, w := range wakes {
				gotWakes = append(gotWakes, got(w))
			}
			if !slices.Equal(gotWakes, tc.want) {
				t.Errorf("wakes:\n got %v\nwant %v", gotWakes, tc.want)
			}
			if tc.outcomes != nil && !slices.Equal(outcomes, tc.outcomes) {
				t.Errorf("outcomes: got %v, want %v", outcomes, tc.outcomes)
			}
		})
	}
}

func TestEngineForgetsQuietDevices(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	var w []WakeDecision
	w, _ = e.Event(w, at(0), EventInfo{ID: "e1", DeviceID: "d1", App: "a", AcceptedAt: at(0)})
	w, _ = e.Event(w, at(10), EventInfo{ID: "e2", DeviceID: "d1", App: "a", AcceptedAt: at(10)})
	if e.Devices() != 1 || e.Pending() != 1 {
		t.Fatalf("devices=%d pending=%d, want 1 1", e.Devices(), e.Pending())
	}
	if d, ok := e.NextDeadline(); !ok || !d.Equal(at(1000)) {
		t.Fatalf("next deadline %v %v, want %v", d, ok, at(1000))
	}
	w = e.Due(w, at(1000))
	if e.Devices() != 1 || e.Pending() != 0 {
		t.Fatalf("after trailing: devices=%d pending=%d, want 1 0", e.Devices(), e.Pending())
	}
	w = e.Due(w, at(2000))
	if e.Devices() != 0 {
		t.Fatalf("after a quiet interval: devices=%d, want 0", e.Devices())
	}
	if _, ok := e.NextDeadline(); ok {
		t.Fatal("a deadline is left without devices")
	}
	if len(w) != 2 {
		t.Fatalf("got %d wakes, want 2", len(w))
	}
	// The dedup window outlives the device.
	_, o := e.Event(nil, at(2500), EventInfo{ID: "e2", DeviceID: "d1", App: "a"})
	if o != Duplicate {
		t.Fatalf("replayed id after the device was forgotten: %v, want duplicate", o)
	}
	// And ends.
	e.Due(nil, at(40_000))
	if n := e.SeenIDs(); n != 0 {
		t.Fatalf("%d ids remembered after the window, want 0", n)
	}
	_, o = e.Event(nil, at(40_000), EventInfo{ID: "e2", DeviceID: "d1", App: "a"})
	if o != Woke {
		t.Fatalf("id after the dedup window: %v, want woke", o)
	}
}

func TestWakeDecisionFields(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	link := func(b byte) trace.SpanContext {
		return trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{b}, SpanID: trace.SpanID{b}, TraceFlags: trace.FlagsSampled})
	}
	var w []WakeDecision
	w, _ = e.Event(w, at(0), EventInfo{ID: "e0", DeviceID: "d1", App: "a", AcceptedAt: at(-5), Offset: 10, Link: link(1)})
	for i := 1; i <= 100; i++ {
		ev := EventInfo{ID: fmt.Sprintf("e%d", i), DeviceID: "d1", App: "a", AcceptedAt: at(i), Offset: int64(10 + i)}
		switch i % 4 {
		case 0, 2:
			ev.Link = link(byte(i))
		case 1:
			ev.Link = trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i)}, SpanID: trace.SpanID{byte(i)}}) // unsampled
		}
		w, _ = e.Event(w, at(i), ev)
	}
	if got := e.Watermark(111); got != 11 {
		t.Fatalf("watermark with pending offsets 11..110: %d, want 11", got)
	}
	w = e.Due(w, at(1000))
	if got := e.Watermark(111); got != 111 {
		t.Fatalf("watermark with nothing pending: %d, want 111", got)
	}
	if len(w) != 2 {
		t.Fatalf("got %d wakes, want 2", len(w))
	}
	l, tr := w[0], w[1]
	if l.EventCount != 1 || len(l.Links) != 1 || l.MinOffset != 10 || !l.FirstEventAt.Equal(at(-5)) {
		t.Errorf("leading wake: %+v", l)
	}
	if tr.EventCount != 100 || len(tr.EventIDs) != MaxEventIDs || tr.EventIDs[0] != "e1" || tr.EventIDs[63] != "e64" {
		t.Errorf("trailing wake: count %d, %d ids (%s..%s)", tr.EventCount, len(tr.EventIDs), tr.EventIDs[0], tr.EventIDs[len(tr.EventIDs)-1])
	}
	// Every sampled event is linked, also beyond the first MaxEventIDs; unsampled ones are not.
	if len(tr.Links) != 50 || !tr.Links[0].Equal(link(2)) || !tr.Links[49].Equal(link(100)) {
		t.Errorf("trailing wake has %d links, want the 50 sampled events", len(tr.Links))
	}
	if !tr.FirstEventAt.Equal(at(1)) || !tr.LastEventAt.Equal(at(100)) || tr.MinOffset != 11 || tr.Urgent {
		t.Errorf("trailing wake: first %v last %v minOffset %d urgent %v", tr.FirstEventAt, tr.LastEventAt, tr.MinOffset, tr.Urgent)
	}
	if want := WakeID("d1", "e1", "e100", 100, at(1).UnixNano()); tr.ID != want {
		t.Errorf("trailing wake id %s, want %s", tr.ID, want)
	}

	w, _ = e.Event(w[:0], at(1100), EventInfo{ID: "x1", DeviceID: "d1", App: "a", AcceptedAt: at(1100)})
	w, _ = e.Event(w, at(1200), EventInfo{ID: "x2", DeviceID: "d1", App: "a", AcceptedAt: at(1200), Urgent: true})
	if len(w) != 1 || !w[0].Urgent || w[0].Reason != Urgent || w[0].EventCount != 2 {
		t.Errorf("urgent wake: %+v", w)
	}
}

func TestWakeIDIsDeterministic(t *testing.T) {
	t.Parallel()
	a := WakeID("dev", "e1", "e9", 9, at(0).UnixNano())
	if a != WakeID("dev", "e1", "e9", 9, at(0).UnixNano()) {
		t.Fatal("same inputs gave different ids")
	}
	for _, other := range []string{
		WakeID("dev2", "e1", "e9", 9, at(0).UnixNano()),
		WakeID("dev", "e2", "e9", 9, at(0).UnixNano()),
		WakeID("dev", "e1", "e8", 9, at(0).UnixNano()),
		WakeID("dev", "e1", "e9", 10, at(0).UnixNano()),
		WakeID("de", "ve1", "e9", 9, at(0).UnixNano()),
	} {
		if other == a {
			t.Errorf("different inputs gave the same id %s", a)
		}
	}
	if len(a) != 36 || a[14] != '8' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("id %s is not a UUIDv8", a)
	}
	// Time-ordered by the interval start.
	if later := WakeID("dev", "e1", "e9", 9, at(1).UnixNano()); later <= a {
		t.Errorf("id of a later interval %s sorts before %s", later, a)
	}
}

func TestRestore(t *testing.T) {
	t.Parallel()
	e := newTestEngine(t)
	// The previous owner woke d1 at 0 covering e1, e2; d2 long ago.
	e.Restore(at(400), RestoredWake{DeviceID: "d1", App: "a", At: at(0), EventIDs: []string{"e1", "e2"}})
	e.Restore(at(400), RestoredWake{DeviceID: "d2", App: "a", At: at(-5000), EventIDs: []string{"f1"}})
	e.Restore(at(400), RestoredWake{DeviceID: "d3", App: "gone", At: at(0), EventIDs: []string{"g1"}})
	if e.Devices() != 1 {
		t.Fatalf("tracked %d devices after restore, want 1 (only d1 is inside its interval)", e.Devices())
	}
	var w []WakeDecision
	var outs []Outcome
	for _, ev := range []EventInfo{
		{ID: "e1", DeviceID: "d1"}, {ID: "e2", DeviceID: "d1"}, // replayed, covered
		{ID: "e3", DeviceID: "d1"}, // replayed, not covered: absorbed, not a new leading wake
		{ID: "f1", DeviceID: "d2"}, // covered long ago but still in the dedup window
		{ID: "f2", DeviceID: "d2"}, // new leading edge
	} {
		ev.App = "a"
		var o Outcome
		w, o = e.Event(w, at(500), ev)
		outs = append(outs, o)
	}
	if want := []Outcome{Duplicate, Duplicate, Absorbed, Duplicate, Woke}; !slices.Equal(outs, want) {
		t.Fatalf("outcomes %v, want %v", outs, want)
	}
	w = e.Due(w, at(1000))
	var gw []want
	for _, d := range w {
		gw = append(gw, got(d))
	}
	if wantW := []want{{500, "d2", Leading, "f2"}, {1000, "d1", Trailing, "e3"}}; !slices.Equal(gw, wantW) {
		t.Fatalf("wakes %v, want %v", gw, wantW)
	}
	// An older wake does not move the last wake back.
	e.Restore(at(1000), RestoredWake{DeviceID: "d1", App: "a", At: at(100)})
	if d, _ := e.NextDeadline(); !d.Equal(at(1500)) {
		t.Fatalf("next deadline %v, want %v", d.Sub(t0), 1500*time.Millisecond)
	}
}

// TestEventsJoinBatch is the replay after a rebalance whose handover outlasted the interval:
// the previous owner woke d1 at 0 and absorbed e2 and e3, its trailing wake was due at 1000,
// and the new owner replays both at 1200. Decided together (Events), they go out in one wake;
// one by one (Event), e3 would wait for a trailing wake at 2200.
func TestEventsJoinBatch(t *testing.T) {
	t.Parallel()
	evs := []EventInfo{
		{ID: "e2", DeviceID: "d1", App: "a", AcceptedAt: at(300), Offset: 2},
		{ID: "x1", DeviceID: "d2", App: "a", AcceptedAt: at(1100), Offset: 3},
		{ID: "e3", DeviceID: "d1", App: "a", AcceptedAt: at(600), Offset: 4, Urgent: true},
		{ID: "e2", DeviceID: "d1", App: "a", AcceptedAt: at(300), Offset: 5}, // duplicate
		{ID: "x2", DeviceID: "d2", App: "a", AcceptedAt: at(1150), Offset: 6},
	}
	e := newTestEngine(t)
	e.Restore(at(1200), RestoredWake{DeviceID: "d1", App: "a", At: at(0), EventIDs: []string{"e1"}})
	w, outs := e.Events(nil, nil, at(1200), evs)
	if want := []Outcome{Woke, Woke, Woke, Duplicate, Woke}; !slices.Equal(outs, want) {
		t.Fatalf("outcomes %v, want %v", outs, want)
	}
	var gw []want
	for _, d := range w {
		gw = append(gw, got(d))
	}
	if wantW := []want{{1200, "d1", Leading, "e2,e3"}, {1200, "d2", Leading, "x1,x2"}}; !slices.Equal(gw, wantW) {
		t.Fatalf("wakes %v, want %v", gw, wantW)
	}
	d1 := w[0]
	if d1.EventCount != 2 || !d1.Urgent || d1.MinOffset != 2 || !d1.FirstEventAt.Equal(at(300)) || !d1.LastEventAt.Equal(at(600)) ||
		d1.ID != WakeID("d1", "e2", "e3", 2, at(300).UnixNano()) {
		t.Errorf("joined wake %+v", d1)
	}
	if e.Pending() != 0 || e.Watermark(7) != 7 {
		t.Errorf("pending %d, watermark %d: joined events are covered", e.Pending(), e.Watermark(7))
	}
	// The interval starts at the wake: a later event waits for it.
	w, outs = e.Events(nil, nil, at(1300), []EventInfo{{ID: "e4", DeviceID: "d1", App: "a", AcceptedAt: at(1300)}})
	if len(w) != 0 || outs[0] != Absorbed {
		t.Fatalf("event after the joined wake: %v %v", w, outs)
	}
	if w = e.Due(nil, at(2199)); len(w) != 0 {
		t.Fatalf("trailing wake before the interval ended: %v", w)
	}
	if w = e.Due(nil, at(2200)); len(w) != 1 || got(w[0]) != (want{2200, "d1", Trailing, "e4"}) {
		t.Fatalf("trailing wake %v", w)
	}

	// One by one, the same replay splits.
	e = newTestEngine(t)
	e.Restore(at(1200), RestoredWake{DeviceID: "d1", App: "a", At: at(0), EventIDs: []string{"e1"}})
	w, _ = e.Event(nil, at(1200), evs[0])
	if _, o := e.Event(nil, at(1200), EventInfo{ID: "e3", DeviceID: "d1", App: "a", AcceptedAt: at(600)}); len(w) != 1 || o != Absorbed {
		t.Fatalf("Event: %v then %v", w, o)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{},
		{MinIntervals: map[string]time.Duration{"a": 0}},
		{MinIntervals: map[string]time.Duration{"a": time.Minute}, DedupWindow: time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
