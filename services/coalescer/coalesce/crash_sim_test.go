package coalesce

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The crash simulation runs the engine the way the partition runner does (partition.go,
// restore.go) against a simulated Kafka, and kills it at random points:
//
//   - push.events is the stream: offsets, arrival times, and acceptance times that may be
//     slightly out of order (accepted_at older than the previous event's);
//   - push.wakes is the wake log: every wake whose produce completed, in produce order;
//   - the committed offset only ever moves to Engine.Watermark(next) at commit points (every k
//     handled batches, on a graceful release, or never for some seeds).
//
// A handled batch is: Events for the records fetched at one now, then Due(now), then produce.
// A crash drops the engine before a handle, after the decision but before the produce (the
// decided wakes are lost), after the produce but before any commit, or gracefully (commit what
// is safe, send no pending trailing wake early). After a random downtime a fresh engine is
// restored like restore.go does — every logged wake produced at or after the lookback, in log
// order, via Restore(now, …), where the lookback is one window before now or, when earlier,
// before the arrival of the event at the committed offset — and the stream is replayed from
// the committed offset in batches.
//
// Checked over the whole run, on the wake log deduplicated by wake id (first copy kept), as
// the sender delivers it:
//
//   - no loss: every event id is covered by a wake decided at or after its arrival and at
//     most min_interval + the fetch delay later — or, when the partition crashed before the
//     event was covered, min_interval + fetch delay after the restart. (Not "arrival +
//     min_interval + downtime": the runner handles whatever records are fetched, so a device's
//     replayed events may be split over batches; the first then gets a wake of its own at the
//     restart and the rest the trailing wake one interval later, as the rate requires. The
//     test logs how many events exceed the tighter bound.) Plus one min_interval per extra
//     wake of the device in between (below, including copies the sender drops: the engine
//     that re-derived a wake restarted the device's interval all the same);
//   - rate: non-urgent wakes of a device are min_interval apart or more, no tolerance; and a
//     non-urgent wake comes min_interval or more after the previous wake of its device of any
//     reason (a leading wake only after a quiet interval, a trailing one not before its end);
//   - no duplicate bursts: an event is covered by one wake only, except under the one
//     documented limit (README, "Restore"): it was beyond the first MaxEventIDs ids of the
//     wake that covered it first, so the restored wake does not list it. However long the
//     committed offset lagged (the seeds that never commit, a commit lag + downtime beyond the
//     window), every wake covering a replayed event is read back. An urgent wake must cover an
//     urgent event covered for the first time (or re-covered under that limit). A wake covering
//     no event for the first time is an "extra" wake: it is only possible through that limit.
//     Per device, the wakes sent are at most those of the same stream
//     run without crashes (same batches and delays) + the extra wakes + one per restart
//     (a restart can shift the device's interval: the replayed events get a wake at the
//     restart where the crash-free run sent a trailing wake at the end of the interval);
//   - commit safety: at every commit, every event below the committed offset is covered by a
//     produced wake;
//   - every crash-free run (the seeds without crashes, and the comparison runs above): the
//     wakes equal the reference model's (minimality).

// The window is the longest interval (simIntervals) + the restore slack, as in settings.go.
const (
	crashSimSlack    = 4 * time.Second
	crashSimWindow   = 2*time.Second + crashSimSlack
	crashSimMaxDelay = 30 * time.Millisecond // how late a fetched record may be handled
	crashSimMaxDown  = 2500 * time.Millisecond
)

// crashStream is randomStream plus out-of-order acceptance times (up to 80 ms older than the
// arrival, so often older than the previous event's) and, for some streams, a hot device
// receiving more than MaxEventIDs events inside one interval.
func crashStream(r *rand.Rand, n int) []simEvent {
	s := randomStream(r, n)
	if r.IntN(3) == 0 {
		at := r.IntN(len(s))
		dev := fmt.Sprintf("%032x", 0xfeed)
		var burst []simEvent
		for j := range MaxEventIDs + 1 + r.IntN(80) {
			burst = append(burst, simEvent{t: s[at].t, id: fmt.Sprintf("hot-%d", j), device: dev, app: "slow"})
		}
		s = slices.Insert(s, at, burst...)
	}
	acc := map[string]time.Time{}
	for i := range s {
		s[i].offset = int64(i)
		if a, ok := acc[s[i].id]; ok { // a re-delivery keeps the original's acceptance time
			s[i].accepted = a
			continue
		}
		s[i].accepted = s[i].t.Add(-time.Duration(r.IntN(80)) * time.Millisecond)
		acc[s[i].id] = s[i].accepted
	}
	return s
}

// crashPlan is one crash: at (or at the first handle after) at, the engine dies in mode, and a
// new one is restored down later.
type crashPlan struct {
	at   time.Time
	down time.Duration
	mode crashMode
}

type crashMode int

const (
	killIdle      crashMode = iota // SIGKILL between handles, at at
	killBeforeAck                  // SIGKILL after the decision, before the produce completes
	killAfterAck                   // SIGKILL after the produce, before any commit
	release                        // graceful: commit what is safe, then stop
)

// crashBreak deliberately breaks the recovery, to show the checks catch it.
type crashBreak int

const (
	breakNone        crashBreak = iota
	breakSkipRestore            // do not read the wake log back
	breakShortWindow            // read back only min_interval/4 of the wake log
	breakWindowOnly             // read back one window before now, not before the committed event
	breakReplayNext             // resume from the last handled offset, not the committed one
)

type crashConfig struct {
	crashes     []crashPlan
	commitEvery int // commit after every k-th handled batch; 0: never (except on release)
	maxBatch    int
	// per offset: how late the record is handled when it is live, and the most records the
	// batch it starts may hold (decided up front, so that the crash-free run of a stream
	// takes the same steps as the crash run up to its first crash)
	delay  []time.Duration
	batch  []int
	broken crashBreak
}

type loggedWake struct {
	w      WakeDecision
	covers []string // every covered event id (the wake lists only the first MaxEventIDs)
	inc    int      // incarnation (engine) that produced it
}

type crashStats struct {
	crashes, events, late, wakes, copies, extra, recovered64, excess int
	// per device: wakes sent, and those of them covering no event for the first time
	perDevice, extraPerDevice map[string]int
}

func (s *crashStats) add(o crashStats) {
	s.crashes += o.crashes
	s.events += o.events
	s.late += o.late
	s.wakes += o.wakes
	s.copies += o.copies
	s.extra += o.extra
	s.recovered64 += o.recovered64
	s.excess += o.excess
}

// simulateCrashes runs stream with cfg and checks the invariants above.
func simulateCrashes(stream []simEvent, cfg crashConfig) (crashStats, error) {
	st := crashStats{perDevice: map[string]int{}, extraPerDevice: map[string]int{}}
	var log []loggedWake
	coveredBy := map[string]int{} // event id -> index in log of the first wake covering it
	var restoredAt []time.Time    // per incarnation: when it restored
	var downs [][2]time.Time      // crash and restart times

	var e *Engine
	var pend map[string][]string // the incarnation's absorbed ids per device
	var ref *reference
	if len(cfg.crashes) == 0 {
		ref = newReference(crashSimWindow)
	}
	now := stream[0].t
	var next, committed int64
	start := func(t time.Time) error {
		var err error
		e, err = New(Config{MinIntervals: simIntervals, DedupWindow: crashSimWindow})
		if err != nil {
			return err
		}
		pend = map[string][]string{}
		restoredAt = append(restoredAt, t)
		// The lookback of restore.go: one window before now or, when earlier, before the
		// record time (its arrival) of the first event at or after the committed offset.
		since := t.Add(-crashSimWindow)
		if committed < int64(len(stream)) && !stream[committed].t.After(t) {
			since = minTime(since, stream[committed].t.Add(-crashSimWindow))
		}
		switch cfg.broken {
		case breakSkipRestore:
			return nil
		case breakShortWindow:
			since = t.Add(-simIntervals["fast"] / 4)
		case breakWindowOnly:
			since = t.Add(-crashSimWindow)
		}
		for _, l := range log {
			if !l.w.At.Before(since) {
				e.Restore(t, RestoredWake{DeviceID: l.w.DeviceID, App: l.w.App, At: l.w.At, EventIDs: l.w.EventIDs})
			}
		}
		return nil
	}
	commit := func() error {
		off := e.Watermark(next)
		if off <= committed {
			return nil
		}
		for _, ev := range stream[committed:off] {
			if _, ok := coveredBy[ev.id]; !ok {
				return fmt.Errorf("commit %d passes event %s (offset %d), covered by no produced wake", off, ev.id, ev.offset)
			}
		}
		committed = off
		return nil
	}
	// handle decides batch at t (Events, then Due) and returns the wakes with what they cover.
	handle := func(t time.Time, batch []simEvent) ([]loggedWake, error) {
		infos := make([]EventInfo, len(batch))
		for i, ev := range batch {
			infos[i] = EventInfo{ID: ev.id, DeviceID: ev.device, App: ev.app, AcceptedAt: ev.accepted, Urgent: ev.urgent, Offset: ev.offset}
		}
		ws, outs := e.Events(nil, nil, t, infos)
		var covers [][]string
		round := map[string]int{}
		for i, ev := range batch {
			switch outs[i] {
			case Absorbed:
				pend[ev.device] = append(pend[ev.device], ev.id)
			case Woke:
				if j, ok := round[ev.device]; ok {
					covers[j] = append(covers[j], ev.id)
					continue
				}
				if j := len(covers); j >= len(ws) || ws[j].DeviceID != ev.device {
					return nil, fmt.Errorf("event %s woke %s, no matching wake", ev.id, ev.device)
				}
				round[ev.device] = len(covers)
				covers = append(covers, append(pend[ev.device], ev.id))
				delete(pend, ev.device)
			}
		}
		if len(covers) != len(ws) {
			return nil, fmt.Errorf("%d wakes for %d woken devices", len(ws), len(covers))
		}
		if ref != nil {
			ref.round = map[string]bool{}
			for _, ev := range batch {
				ev.t = t
				ref.event(ev)
			}
			ref.round = nil
		}
		ws = e.Due(ws, t)
		for _, w := range ws[len(covers):] {
			if len(pend[w.DeviceID]) == 0 {
				return nil, fmt.Errorf("trailing wake %s of %s with nothing absorbed", w.ID, w.DeviceID)
			}
			covers = append(covers, pend[w.DeviceID])
			delete(pend, w.DeviceID)
		}
		out := make([]loggedWake, len(ws))
		for i, w := range ws {
			c := covers[i]
			if w.EventCount != len(c) || !slices.Equal(w.EventIDs, c[:min(len(c), MaxEventIDs)]) {
				return nil, fmt.Errorf("wake %s of %s: %d events %v, want %d %v", w.ID, w.DeviceID, w.EventCount, w.EventIDs, len(c), c)
			}
			out[i] = loggedWake{w: w, covers: c, inc: len(restoredAt) - 1}
		}
		return out, nil
	}
	produce := func(ws []loggedWake) {
		for _, l := range ws {
			log = append(log, l)
			for _, id := range l.covers {
				if _, ok := coveredBy[id]; !ok {
					coveredBy[id] = len(log) - 1
				}
			}
		}
	}

	if err := start(now); err != nil {
		return st, err
	}
	crashes := cfg.crashes
	steps := 0
run:
	for {
		// What comes next: the next record (fetched a little late, sometimes), or a timer.
		var at time.Time
		var batch []simEvent
		dl, timer := e.NextDeadline()
		if next < int64(len(stream)) {
			at = stream[next].t
			if at.Before(now) { // a backlog (replay): handled at once
				at = now
			} else { // a live record, sometimes handled a little late
				at = at.Add(cfg.delay[next])
			}
		}
		switch {
		case timer && (next == int64(len(stream)) || !dl.After(at)):
			at = dl
		case next < int64(len(stream)):
			n := cfg.batch[next]
			for i := next; i < int64(len(stream)) && int64(len(batch)) < int64(n) && !stream[i].t.After(at); i++ {
				batch = append(batch, stream[i])
			}
		default:
			if ref != nil {
				ref.due(now.Add(time.Minute))
			}
			break run
		}
		if len(crashes) > 0 && !crashes[0].at.After(at) {
			c := crashes[0]
			crashes = crashes[1:]
			st.crashes++
			tc := c.at
			if tc.Before(now) {
				tc = now
			}
			switch c.mode {
			case killBeforeAck, killAfterAck:
				tc = at
				ws, err := handle(at, batch)
				if err != nil {
					return st, err
				}
				if c.mode == killAfterAck {
					produce(ws)
				}
			case release:
				if err := commit(); err != nil {
					return st, err
				}
			}
			now = tc.Add(c.down)
			downs = append(downs, [2]time.Time{tc, now})
			switch {
			case cfg.broken != breakReplayNext:
				next = committed
			case c.mode == killAfterAck && len(batch) > 0:
				next = batch[len(batch)-1].offset + 1
			}
			if err := start(now); err != nil {
				return st, err
			}
			continue
		}
		ws, err := handle(at, batch)
		if err != nil {
			return st, err
		}
		produce(ws)
		if len(batch) > 0 {
			next = batch[len(batch)-1].offset + 1
		}
		now = at
		steps++
		if cfg.commitEvery > 0 && steps%cfg.commitEvery == 0 {
			if err := commit(); err != nil {
				return st, err
			}
		}
	}
	if e.Pending() != 0 {
		return st, fmt.Errorf("%d devices still pending at the end", e.Pending())
	}

	// The wake log as the sender delivers it: first copy of each wake id.
	seenWake := map[string]bool{}
	var sent []loggedWake
	extras := map[string][]time.Time{} // device -> times of its wakes covering no event first
	for _, l := range log {
		if seenWake[l.w.ID] {
			// A copy the sender drops; the engine that decided it restarted the device's
			// interval all the same (see the no-loss bound).
			st.copies++
			extras[l.w.DeviceID] = append(extras[l.w.DeviceID], l.w.At)
			continue
		}
		seenWake[l.w.ID] = true
		sent = append(sent, l)
	}
	st.wakes = len(sent)
	urgent := map[string]bool{}
	first := map[string]simEvent{} // first delivery of each id
	for _, ev := range stream {
		if _, ok := first[ev.id]; !ok {
			first[ev.id] = ev
			urgent[ev.id] = ev.urgent
		}
	}

	// No duplicate bursts: coverage is once, except the documented limits.
	cov := map[string]WakeDecision{} // id -> first wake (in sent order) covering it
	for _, l := range sent {
		w := l.w
		fresh, urgentOK := 0, false
		listed := map[string]bool{}
		for _, id := range l.covers {
			prev, again := cov[id]
			if !again {
				cov[id] = w
				fresh++
				urgentOK = urgentOK || urgent[id]
				continue
			}
			for _, x := range prev.EventIDs {
				listed[x] = true
			}
			restored := restoredAt[l.inc]
			if !listed[id] {
				st.recovered64++
			} else {
				return st, fmt.Errorf("%s: event %s covered by wake %s (%s at %v) and again by %s (%s at %v, engine restored at %v)",
					w.DeviceID, id, prev.ID, prev.Reason, prev.At.Sub(t0), w.ID, w.Reason, w.At.Sub(t0), restored.Sub(t0))
			}
			urgentOK = urgentOK || urgent[id]
			clear(listed)
		}
		st.perDevice[w.DeviceID]++
		if fresh == 0 {
			st.extra++
			st.extraPerDevice[w.DeviceID]++
			extras[w.DeviceID] = append(extras[w.DeviceID], w.At)
		}
		if w.Reason == Urgent && !urgentOK {
			return st, fmt.Errorf("%s: urgent wake %s at %v covers no urgent event not woken before", w.DeviceID, w.ID, w.At.Sub(t0))
		}
	}

	// No loss.
	st.events = len(first)
	for id, ev := range first {
		w, ok := cov[id]
		if !ok {
			return st, fmt.Errorf("event %s (%s, offset %d, at %v) was never covered", id, ev.device, ev.offset, ev.t.Sub(t0))
		}
		// Within I of its arrival (plus the fetch delay), or, when the partition crashed before it
		// was covered, of the restart: the replay may split the device's replayed events over
		// batches (the runner handles whatever records are fetched), so the first one may get
		// a wake of its own and the others wait for the trailing wake one I after the restart.
		// tight is the bound had the restart only delayed the interval by the downtime.
		interval := simIntervals[ev.app]
		bound := ev.t.Add(interval + crashSimMaxDelay)
		tight := bound
		for _, d := range downs {
			if d[0].Before(bound) && d[1].After(ev.t) {
				tight = tight.Add(d[1].Sub(maxTime(d[0], ev.t)))
				bound = d[1].Add(interval + crashSimMaxDelay)
			}
		}
		for _, x := range extras[ev.device] {
			if !x.Before(ev.t) && !x.After(bound) {
				bound = bound.Add(interval)
			}
		}
		if w.At.After(tight) {
			st.late++
		}
		if w.At.Before(ev.t) || w.At.After(bound) {
			return st, fmt.Errorf("event %s (%s) at %v covered by wake %s at %v (bound %v)", id, ev.device, ev.t.Sub(t0), w.ID, w.At.Sub(t0), bound.Sub(t0))
		}
	}

	// Rate and the leading/trailing rules, per device.
	byDevice := map[string][]WakeDecision{}
	for _, l := range sent {
		byDevice[l.w.DeviceID] = append(byDevice[l.w.DeviceID], l.w)
	}
	for dev, ws := range byDevice {
		interval := simIntervals[ws[0].App]
		var lastAny, lastNonUrgent time.Time
		for i, w := range ws {
			if i > 0 && w.At.Before(lastAny) {
				return st, fmt.Errorf("%s: wake at %v sent after one at %v", dev, w.At.Sub(t0), lastAny.Sub(t0))
			}
			if w.Reason != Urgent && !lastNonUrgent.IsZero() && w.At.Sub(lastNonUrgent) < interval {
				return st, fmt.Errorf("%s: non-urgent wakes %v apart (interval %v): %s at %v", dev, w.At.Sub(lastNonUrgent), interval, w.Reason, w.At.Sub(t0))
			}
			if i > 0 && w.Reason != Urgent && w.At.Sub(lastAny) < interval {
				return st, fmt.Errorf("%s: %s wake %v after the previous wake", dev, w.Reason, w.At.Sub(lastAny))
			}
			if i == 0 && w.Reason == Trailing {
				return st, fmt.Errorf("%s: first wake is trailing", dev)
			}
			lastAny = w.At
			if w.Reason != Urgent {
				lastNonUrgent = w.At
			}
		}
		if ref == nil {
			continue
		}
		// Crash-free: same wakes as the reference model.
		var got []refWake
		for _, w := range ws {
			got = append(got, refWake{w.At.Sub(t0), w.Reason, strings.Join(w.EventIDs, ",")})
		}
		want := ref.wakes[dev]
		for i := range want { // the reference lists every id; a wake the first MaxEventIDs
			if ids := strings.Split(want[i].ids, ","); len(ids) > MaxEventIDs {
				want[i].ids = strings.Join(ids[:MaxEventIDs], ",")
			}
		}
		if !slices.Equal(got, want) {
			return st, fmt.Errorf("%s:\n got %v\nwant %v", dev, got, want)
		}
	}
	if ref != nil && len(ref.wakes) != len(byDevice) {
		return st, fmt.Errorf("reference woke %d devices, engine %d", len(ref.wakes), len(byDevice))
	}
	return st, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// randomCrashConfig draws crash points (none for every fourth seed), modes, downtimes and a
// commit policy over stream.
func randomCrashConfig(r *rand.Rand, stream []simEvent, seed int) crashConfig {
	cfg := crashConfig{maxBatch: []int{1, 4, 16, 500}[r.IntN(4)]}
	cfg.delay, cfg.batch = make([]time.Duration, len(stream)), make([]int, len(stream))
	for i := range stream {
		if r.IntN(4) == 0 {
			cfg.delay[i] = time.Duration(r.Int64N(int64(crashSimMaxDelay)))
		}
		cfg.batch[i] = 1 + r.IntN(cfg.maxBatch)
	}
	if r.IntN(5) > 0 {
		cfg.commitEvery = 1 + r.IntN(8)
	}
	if seed%4 == 0 {
		return cfg
	}
	span := stream[len(stream)-1].t.Sub(stream[0].t) + 3*time.Second
	for range 1 + r.IntN(5) {
		down := time.Duration(r.Int64N(int64(crashSimMaxDown)))
		if r.IntN(4) == 0 {
			down = 0 // immediate restart
		}
		cfg.crashes = append(cfg.crashes, crashPlan{
			at:   stream[0].t.Add(time.Duration(r.Int64N(int64(span)))),
			down: down,
			mode: crashMode(r.IntN(4)),
		})
	}
	slices.SortFunc(cfg.crashes, func(a, b crashPlan) int { return a.at.Compare(b.at) })
	return cfg
}

func TestSimulationCrashRestart(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 60
	}
	var total crashStats
	for seed := range runs {
		r := rand.New(rand.NewPCG(uint64(seed), 1357))
		stream := crashStream(r, 50+r.IntN(400))
		cfg := randomCrashConfig(r, stream, seed)
		st, err := simulateCrashes(stream, cfg)
		if err != nil {
			t.Fatalf("seed %d (%d crashes, commit every %d, batch ≤ %d): %v", seed, len(cfg.crashes), cfg.commitEvery, cfg.maxBatch, err)
		}
		// No more wakes than the same stream without crashes, plus the re-covering-only
		// wakes of the documented limits, plus one per restart: a restart can shift a device's
		// interval (its replayed events get a leading wake at the restart, and the next ones
		// a trailing wake, where the crash-free run sent one trailing wake).
		free := cfg
		free.crashes = nil
		fs, err := simulateCrashes(stream, free)
		if err != nil {
			t.Fatalf("seed %d without crashes: %v", seed, err)
		}
		for dev, n := range st.perDevice {
			if allowed := fs.perDevice[dev] + st.extraPerDevice[dev] + st.crashes; n > allowed {
				t.Fatalf("seed %d: %s got %d wakes, crash-free %d + %d re-covering only + %d restarts",
					seed, dev, n, fs.perDevice[dev], st.extraPerDevice[dev], st.crashes)
			}
			total.excess += max(0, n-fs.perDevice[dev]-st.extraPerDevice[dev])
		}
		total.add(st)
	}
	t.Logf("%d runs: %d crashes, %d events, %d covered later than arrival + interval + downtime (replay split over batches); "+
		"%d wakes sent, %d copies dropped by wake id, %d wakes re-covering only (%d events beyond %d ids); "+
		"%d wakes more than crash-free otherwise",
		runs, total.crashes, total.events, total.late, total.wakes, total.copies, total.extra, total.recovered64, MaxEventIDs, total.excess)
}

// TestSimulationCrashDetectsBrokenRecovery runs the crash simulation with recovery broken on
// purpose: each breakage must fail some seeds, or the checks above prove nothing.
func TestSimulationCrashDetectsBrokenRecovery(t *testing.T) {
	t.Parallel()
	for _, b := range []struct {
		name string
		brk  crashBreak
	}{{"skip restore", breakSkipRestore}, {"short window", breakShortWindow}, {"window only", breakWindowOnly}, {"replay from next", breakReplayNext}} {
		failed, runs := 0, 60
		var example error
		for seed := range runs {
			r := rand.New(rand.NewPCG(uint64(seed), 1357))
			stream := crashStream(r, 50+r.IntN(400))
			cfg := randomCrashConfig(r, stream, seed)
			cfg.broken = b.brk
			if _, err := simulateCrashes(stream, cfg); err != nil {
				failed++
				example = err
			}
		}
		if failed == 0 {
			t.Errorf("%s: no seed failed", b.name)
			continue
		}
		t.Logf("%s: %d/%d seeds fail, e.g. %v", b.name, failed, runs, example)
	}
}
