package runner

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

var c0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cat(s float64) time.Time { return c0.Add(time.Duration(s * float64(time.Second))) }

func TestApplyGrace(t *testing.T) {
	ev := func(s float64) analysis.Event {
		return analysis.Event{Device: 1, Intended: cat(s), Sent: cat(s), Answered: cat(s + 0.01), Accepted: true, Interval: 2 * time.Second}
	}
	events := []analysis.Event{ev(1), ev(8), ev(12), ev(30), ev(70), ev(100)}
	events[3].Accepted = false
	run := &faultRun{spec: scenario.Fault{Kind: scenario.FaultKill, Duration: scenario.Duration(10 * time.Second), MaxRecovery: scenario.Duration(40 * time.Second)},
		start: cat(10), end: cat(20)}
	applyGrace(events, []*faultRun{run}, time.Second)
	// The fault's recovery bound is 20 + 40 = 60 s; events accepted from 10 − 2 − 1 = 7 s on
	// until then get the time left to it.
	want := []time.Duration{0, 60*time.Second - 8010*time.Millisecond, 60*time.Second - 12010*time.Millisecond, 0, 0, 0}
	for i, w := range want {
		if events[i].Grace != w {
			t.Errorf("event %d (at %s) grace %s, want %s", i, events[i].Sent.Sub(c0), events[i].Grace, w)
		}
	}
	if g := maxGrace(events); g != want[1] {
		t.Errorf("maxGrace %s", g)
	}
}

func TestJudgeFaults(t *testing.T) {
	sc := &scenario.Scenario{Recovery: scenario.Recovery{Threshold: scenario.Duration(time.Second), Window: scenario.Duration(5 * time.Second)}}
	// Device 1 is active during the fault and woken late; device 2 only long after it; device 3
	// is woken 3 times over the oracle's 1 outside any fault.
	events := []analysis.Event{
		{Device: 1, Intended: cat(11), Sent: cat(11), Answered: cat(11), Accepted: true, Interval: 2 * time.Second},
		{Device: 1, Intended: cat(12), Sent: cat(12), Answered: cat(12), Interval: 2 * time.Second}, // refused during the fault
		{Device: 2, Intended: cat(200), Sent: cat(200), Answered: cat(200), Accepted: true, Interval: 2 * time.Second},
		{Device: 3, Intended: cat(300), Sent: cat(300), Answered: cat(300), Accepted: true, Interval: 2 * time.Second},
	}
	v := views{leading: []bool{true, false, true, true}, e2e: []time.Duration{25 * time.Second, -1, 10 * time.Millisecond, 10 * time.Millisecond}}
	arrivals := map[int32][]analysis.Arrival{
		1: {{At: cat(36)}, {At: cat(37)}}, // one extra: allowed for a touched device
		2: {{At: cat(200.01)}},
		3: {{At: cat(300.01)}, {At: cat(301)}, {At: cat(302)}},
	}
	runs := []*faultRun{{spec: scenario.Fault{Kind: scenario.FaultKill, Target: "coalescer-1", MaxRecovery: scenario.Duration(time.Minute)},
		start: cat(10), end: cat(20), ready: cat(30), catchUp: -1}}
	sum := &report.Summary{}
	judgeFaults(sum, sc, events, nil, v, arrivals, runs, cat(0), cat(400))
	c := sum.Chaos
	if c == nil || len(c.Faults) != 1 {
		t.Fatalf("chaos %+v", c)
	}
	f := c.Faults[0]
	// Event 0 waited from 11 s + 1 s threshold until 36 s: healthy from 36 s on, 16 s after the end.
	if !f.Recovered || f.Recovery != 16*time.Second || f.Ready != 10*time.Second || f.Start != 10*time.Second || f.Duration != 10*time.Second {
		t.Errorf("fault %+v", f)
	}
	if f.TouchedDevices != 1 || f.TouchedEvents != 1 || f.Refused != 1 || f.ExtraWakes != 1 || f.MaxExtra != 1 || f.Uncovered != 0 || !f.Pass {
		t.Errorf("fault %+v", f)
	}
	if c.UntouchedWithExtra != 1 || c.MaxExtraUntouched != 2 || c.Pass {
		t.Errorf("untouched %d max %d pass %v", c.UntouchedWithExtra, c.MaxExtraUntouched, c.Pass)
	}
	if len(sum.Failures) != 1 || !strings.Contains(sum.Failures[0], "no fault touched received 2 wakes") {
		t.Errorf("failures %q", sum.Failures)
	}

	// Device 3's second and third wakes are explained once the oracle replays what the
	// pipeline received: two events ingest wrote but failed to acknowledge.
	received := append(slices.Clone(events), analysis.Event{Device: 3, Sent: cat(301), Accepted: true, Interval: 2 * time.Second},
		analysis.Event{Device: 3, Sent: cat(303.5), Accepted: true, Interval: 2 * time.Second})
	sum = &report.Summary{}
	judgeFaults(sum, sc, events, received, v, arrivals, runs, cat(0), cat(400))
	if c := sum.Chaos; c.UntouchedWithExtra != 0 || !c.Pass || len(sum.Failures) != 0 {
		t.Errorf("with the received events: untouched %d pass %v failures %q", c.UntouchedWithExtra, c.Pass, sum.Failures)
	}

	// The same fault with a tight bound, a second extra wake and a lost event fails.
	runs[0].spec.MaxRecovery = scenario.Duration(10 * time.Second)
	arrivals[1] = append(arrivals[1], analysis.Arrival{At: cat(38)})
	v.e2e[0] = -1
	sum = &report.Summary{}
	judgeFaults(sum, sc, events, nil, v, arrivals, runs, cat(0), cat(400))
	f = sum.Chaos.Faults[0]
	if f.Pass || f.Recovered || f.Uncovered != 1 || f.MaxExtra != 2 {
		t.Errorf("fault %+v", f)
	}
	md := report.Markdown(sum)
	for _, want := range []string{"## Faults: FAIL", "| kill coalescer-1 | 10s | 10s | 10s | not recovered (10s) |", "1 touched events lost", "at most 1 allowed"} {
		if !strings.Contains(md, want) {
			t.Errorf("report misses %q:\n%s", want, md)
		}
	}
}
