package analysis

import (
	"slices"
	"time"
)

// Waiting is one event the pipeline should wake its device for at once (a leading-edge or
// urgent event): from its intended send time until the first wake of its device at or after
// its send (Covered zero: never).
type Waiting struct {
	Intended, Covered time.Time
}

// Recovered measures when the pipeline is healthy again after a fault that ended at from.
// The leading-edge lag at time t is how long the oldest event of ws still waiting at t has
// been waiting (from its intended send time; 0 when none waits). The pipeline is healthy at
// t when that lag is at most threshold, and recovered at the first t ≥ from after which it
// stays healthy for window. It returns that t − from (0 when it was healthy from the fault's
// end on), or ok = false when it does not stay healthy for window before until (e.g. the
// last wake the run saw).
//
// The lag exceeds threshold exactly on the union of the intervals (intended + threshold,
// covered) of the events that waited longer than threshold, so no sampling is involved.
func Recovered(ws []Waiting, from, until time.Time, threshold, window time.Duration) (after time.Duration, ok bool) {
	type span struct{ a, b time.Time }
	var bad []span
	for _, w := range ws {
		a := w.Intended.Add(threshold)
		b := w.Covered
		if b.IsZero() {
			b = until.Add(window + time.Nanosecond) // never covered: unhealthy to the end
		}
		if b.After(a) && b.After(from) {
			bad = append(bad, span{a, b})
		}
	}
	slices.SortFunc(bad, func(x, y span) int { return x.a.Compare(y.a) })
	t := from
	for _, s := range bad {
		if !s.b.After(t) {
			continue // over before t
		}
		if s.a.Sub(t) >= window {
			break // healthy for window from t on
		}
		// Unhealthy before t + window: recovery is at the end of this span at the earliest.
		t = s.b
	}
	return t.Sub(from), !t.Add(window).After(until)
}

// Wake is one wake the coalescer produced (push.wakes).
type Wake struct {
	ID      string
	Device  int32
	Created time.Time
	Urgent  bool
}

// Burst is two distinct wakes of one device closer than its interval where the later one is
// not urgent: DESIGN §5's rate invariant broken ("no duplicate bursts").
type Burst struct {
	Device        int32
	First, Second Wake
}

// Bursts finds the duplicate bursts among wakes: per device, consecutive distinct wakes (by
// creation time; a wake id produced twice counts once) less than interval − tolerance apart
// whose later one is not urgent (an urgent wake bypasses the interval; the wake after an
// urgent one waits a whole interval again). interval gives each device's min_interval.
func Bursts(wakes []Wake, interval func(device int32) time.Duration, tolerance time.Duration) []Burst {
	byDev := map[int32][]Wake{}
	seen := map[string]bool{}
	for _, w := range wakes {
		if w.ID != "" && seen[w.ID] {
			continue
		}
		seen[w.ID] = true
		byDev[w.Device] = append(byDev[w.Device], w)
	}
	var out []Burst
	for dev, ws := range byDev {
		slices.SortFunc(ws, func(a, b Wake) int { return a.Created.Compare(b.Created) })
		iv := interval(dev)
		for k := 1; k < len(ws); k++ {
			if !ws[k].Urgent && ws[k].Created.Sub(ws[k-1].Created) < iv-tolerance {
				out = append(out, Burst{Device: dev, First: ws[k-1], Second: ws[k]})
			}
		}
	}
	slices.SortFunc(out, func(a, b Burst) int { return a.Second.Created.Compare(b.Second.Created) })
	return out
}
