// Package analysis turns what the load test observed (publishes sent and answered, wakes the
// provider mocks received) into the measures of the report: latency percentiles, the oracle's
// minimum number of wakes (DESIGN §5 coalescing replayed over the sent stream), uncovered
// events (loss) and duplicate wakes.
package analysis

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Quantiles summarises a latency distribution (exact, from sorted samples).
type Quantiles struct {
	N    int           `json:"n"`
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// Summarize sorts samples in place and computes the quantiles (nearest rank).
func Summarize(samples []time.Duration) Quantiles {
	q := Quantiles{N: len(samples)}
	if len(samples) == 0 {
		return q
	}
	slices.Sort(samples)
	var sum float64
	for _, s := range samples {
		sum += float64(s)
	}
	q.Mean = time.Duration(sum / float64(len(samples)))
	q.P50 = Rank(samples, 0.50)
	q.P90 = Rank(samples, 0.90)
	q.P99 = Rank(samples, 0.99)
	q.P999 = Rank(samples, 0.999)
	q.Max = samples[len(samples)-1]
	return q
}

// Rank is the nearest-rank quantile p of sorted samples.
func Rank(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Event is one publish as the runner sent it.
type Event struct {
	Device   int32
	Intended time.Time // the schedule's send time (open loop)
	Sent     time.Time // when the IQ / HTTP request was written
	Answered time.Time
	Accepted bool // result / 202
	Urgent   bool
	Interval time.Duration // the device's app min_interval
	// Grace is extra time the event's wake may take on top of Interval + slack: the scenario
	// injected a fault around it and gave the pipeline that long to recover (0 without).
	Grace time.Duration
}

// Arrival is one wake received by a provider mock.
type Arrival struct {
	At     time.Time
	WakeID string
	// Offered is when the pipeline first offered this wake to the provider mock, when the mock
	// refused it then (an injected 500/503/429, an override) and accepted it only on a later
	// attempt; zero otherwise. Loss is judged by it: the wait after a provider's refusal is
	// the provider's, not the pipeline's (the end-to-end latencies still use At).
	Offered time.Time
}

// OracleWakes replays DESIGN §5 coalescing over the accepted events (each device: a
// non-urgent event of an idle device wakes at once and opens an interval; events within it
// are covered by one trailing wake at the interval's end, which opens the next interval; an
// urgent event wakes at once, covers what is pending and opens a new interval). It returns
// the minimum number of wakes and, per event index, whether the event got a leading (or
// urgent) wake rather than waiting for a trailing one. A non-urgent event sent less than guard
// after its device's interval ended counts as a wake but not as leading: the pipeline times
// intervals from when it created the wake, a few milliseconds after the oracle's send times,
// so such boundary events may rightly wait for a trailing wake.
func OracleWakes(events []Event, guard time.Duration) (wakes int, leading []bool) {
	perDevice, leading := OracleDeviceWakes(events, guard)
	for _, n := range perDevice {
		wakes += n
	}
	return wakes, leading
}

// OracleDeviceWakes is OracleWakes per device: the minimum number of wakes of each device
// with an accepted event.
func OracleDeviceWakes(events []Event, guard time.Duration) (perDevice map[int32]int, leading []bool) {
	perDevice = map[int32]int{}
	leading = make([]bool, len(events))
	idx := make([]int, 0, len(events))
	for i, e := range events {
		if e.Accepted {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return events[idx[a]].Sent.Before(events[idx[b]].Sent) })
	type state struct {
		last    time.Time // last wake
		pending bool
	}
	st := map[int32]*state{}
	for _, i := range idx {
		e := events[i]
		s := st[e.Device]
		// Fire the trailing wakes due before this event.
		if s != nil && s.pending && !e.Sent.Before(s.last.Add(e.Interval)) {
			perDevice[e.Device]++
			s.last = s.last.Add(e.Interval)
			s.pending = false
		}
		switch {
		case e.Urgent:
			perDevice[e.Device]++
			leading[i] = true
			if s == nil {
				s = &state{}
				st[e.Device] = s
			}
			s.last, s.pending = e.Sent, false
		case s == nil || (!s.pending && !e.Sent.Before(s.last.Add(e.Interval))):
			perDevice[e.Device]++
			leading[i] = s == nil || !e.Sent.Before(s.last.Add(e.Interval+guard))
			if s == nil {
				s = &state{}
				st[e.Device] = s
			}
			s.last = e.Sent
		default:
			s.pending = true
		}
	}
	for dev, s := range st {
		if s.pending {
			perDevice[dev]++
		}
	}
	return perDevice, leading
}

// Coverage is the per-event outcome of matching events with arrivals.
type Coverage struct {
	// E2E[i] is arrival − intended send time of event i's covering wake (-1: uncovered).
	E2E []time.Duration
	// WakeID[i] is the wake id of event i's covering wake ("" if uncovered or unknown).
	WakeID []string
	// Uncovered lists accepted events without a wake within interval + slack of their answer.
	Uncovered []int
}

// offered is when the wake was first offered to the provider: Offered when set and earlier, At
// otherwise.
func (a Arrival) offered() time.Time {
	if !a.Offered.IsZero() && a.Offered.Before(a.At) {
		return a.Offered
	}
	return a.At
}

// Cover matches every accepted event with the first wake its device received at or after the
// event was sent. An event is uncovered when that wake was first offered to the provider (its
// arrival, or its first refused attempt: Arrival.Offered) later than interval + slack (+ the
// event's Grace) after
// the event's answer (ingest answers after it accepted the event, so the answer bounds the
// acceptance time the pipeline — and ClickHouse's uncovered_events — count from), or never.
// arrivals must be sorted by time per device.
func Cover(events []Event, arrivals map[int32][]Arrival, slack time.Duration) Coverage {
	c := Coverage{E2E: make([]time.Duration, len(events)), WakeID: make([]string, len(events))}
	for i, e := range events {
		c.E2E[i] = -1
		if !e.Accepted {
			continue
		}
		as := arrivals[e.Device]
		j := sort.Search(len(as), func(k int) bool { return !as[k].At.Before(e.Sent) })
		accepted := e.Answered
		if accepted.Before(e.Sent) {
			accepted = e.Sent
		}
		if j == len(as) || as[j].offered().After(accepted.Add(e.Interval+slack+e.Grace)) {
			c.Uncovered = append(c.Uncovered, i)
			continue
		}
		c.E2E[i] = as[j].At.Sub(e.Intended)
		c.WakeID[i] = as[j].WakeID
	}
	return c
}

// Duplicates counts wake ids received more than once, and the extra pushes.
func Duplicates(arrivals map[int32][]Arrival) (ids, extra int) {
	seen := map[string]int{}
	for _, as := range arrivals {
		for _, a := range as {
			if a.WakeID != "" {
				seen[a.WakeID]++
			}
		}
	}
	for _, n := range seen {
		if n > 1 {
			ids++
			extra += n - 1
		}
	}
	return ids, extra
}

// Bucket is one second of the run.
type Bucket struct {
	Second   int           `json:"second"`
	Sent     int           `json:"sent"`
	Accepted int           `json:"accepted"`
	Errors   int           `json:"errors"`
	IQP99    time.Duration `json:"ack_p99_ns"`
	E2EP50   time.Duration `json:"e2e_leading_p50_ns"`
	E2EP99   time.Duration `json:"e2e_leading_p99_ns"`
}

// Series buckets events by their intended send second from start: sent, accepted, errors,
// ack p99 (answer − intended) and e2e p50/p99 of the events whose e2e is ≥ 0 (the caller
// passes -1 for events to leave out, e.g. trailing-edge ones).
func Series(events []Event, e2e []time.Duration, start time.Time) []Bucket {
	var out []Bucket
	var acks, lat [][]time.Duration
	for i, e := range events {
		s := int(e.Intended.Sub(start) / time.Second)
		if s < 0 {
			s = 0
		}
		for len(out) <= s {
			out = append(out, Bucket{Second: len(out)})
			acks = append(acks, nil)
			lat = append(lat, nil)
		}
		out[s].Sent++
		if e.Accepted {
			out[s].Accepted++
			acks[s] = append(acks[s], e.Answered.Sub(e.Intended))
		} else {
			out[s].Errors++
		}
		if e2e != nil && e2e[i] >= 0 {
			lat[s] = append(lat[s], e2e[i])
		}
	}
	for s := range out {
		slices.Sort(acks[s])
		slices.Sort(lat[s])
		out[s].IQP99 = Rank(acks[s], 0.99)
		out[s].E2EP50 = Rank(lat[s], 0.5)
		out[s].E2EP99 = Rank(lat[s], 0.99)
	}
	return out
}

// RefineLeading keeps an oracle-leading, non-urgent event as leading edge only if its device
// received no wake in [sent − interval − guard, sent): the pipeline times an interval from
// when it created the wake (≤ its arrival), which under load can be well after the oracle's
// send time, and an event inside the pipeline's interval rightly waits for a trailing wake.
// arrivals must be sorted by time per device.
func RefineLeading(events []Event, leading []bool, arrivals map[int32][]Arrival, guard time.Duration) {
	for i, e := range events {
		if !leading[i] || e.Urgent {
			continue
		}
		as := arrivals[e.Device]
		j := sort.Search(len(as), func(k int) bool { return !as[k].At.Before(e.Sent) })
		if j > 0 && !as[j-1].At.Before(e.Sent.Add(-e.Interval-guard)) {
			leading[i] = false
		}
	}
}
