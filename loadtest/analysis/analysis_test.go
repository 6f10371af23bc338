package analysis

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func ev(dev int32, ms int, urgent bool) Event {
	return Event{Device: dev, Intended: at(ms), Sent: at(ms), Answered: at(ms + 1), Accepted: true, Urgent: urgent, Interval: time.Second}
}

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for i := 1000; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	q := Summarize(s)
	if q.N != 1000 || q.P50 != 500*time.Millisecond || q.P90 != 900*time.Millisecond || q.P99 != 990*time.Millisecond ||
		q.P999 != 999*time.Millisecond || q.Max != time.Second {
		t.Fatalf("%+v", q)
	}
	if (Summarize(nil) != Quantiles{}) {
		t.Fatal("empty")
	}
}

func TestOracle(t *testing.T) {
	events := []Event{
		ev(1, 0, false),    // leading
		ev(1, 100, false),  // pending → trailing at 1000
		ev(1, 500, false),  // same trailing
		ev(1, 1500, false), // within the trailing wake's interval (1000–2000) → trailing at 2000
		ev(1, 5000, false), // idle again → leading
		ev(1, 5100, true),  // urgent → own wake, new interval
		ev(1, 5200, false), // pending → trailing at 6100
		ev(2, 0, false),    // other device: leading
		ev(2, 10, false),   // trailing
	}
	events = append(events, Event{Device: 3, Sent: at(0), Interval: time.Second}) // not accepted: ignored
	wakes, leading := OracleWakes(events, 0)
	// device 1: 0, 1000, 2000, 5000, 5100(u), 6100 = 6; device 2: 0, 1000 = 2
	if wakes != 8 {
		t.Fatalf("wakes %d, want 8", wakes)
	}
	want := []bool{true, false, false, false, true, true, false, true, false, false}
	for i := range want {
		if leading[i] != want[i] {
			t.Errorf("event %d leading %v, want %v", i, leading[i], want[i])
		}
	}
}

func TestOracleBoundaryGuard(t *testing.T) {
	events := []Event{ev(1, 0, false), ev(1, 1010, false), ev(1, 5000, false)}
	wakes, leading := OracleWakes(events, 50*time.Millisecond)
	// 1010 is just after the interval ended: a leading wake for the oracle's count, but too close
	// to the boundary to be judged as leading-edge latency.
	if wakes != 3 || !leading[0] || leading[1] || !leading[2] {
		t.Fatalf("wakes %d leading %v", wakes, leading)
	}
}

func TestRefineLeading(t *testing.T) {
	events := []Event{ev(1, 0, false), ev(1, 1100, false), ev(1, 1100, true), ev(2, 3000, false)}
	_, leading := OracleWakes(events, 0)
	// Device 1's first wake reached the mock only at 300 ms (the pipeline lagged), so its
	// interval ran until ≥ 1300 ms: the event at 1100 is not a leading edge; urgent ones are.
	arrivals := map[int32][]Arrival{1: {{At: at(300)}, {At: at(1101)}}, 2: {{At: at(1000)}, {At: at(3001)}}}
	RefineLeading(events, leading, arrivals, 50*time.Millisecond)
	if !leading[0] || leading[1] || !leading[2] || !leading[3] {
		t.Fatalf("leading %v", leading)
	}
}

func TestCoverAndDuplicates(t *testing.T) {
	events := []Event{ev(1, 0, false), ev(1, 100, false), ev(2, 0, false), ev(3, 0, false)}
	events[0].Intended = at(-5) // sent 5 ms late: latency counts from the intended time
	arrivals := map[int32][]Arrival{
		1: {{At: at(10), WakeID: "a"}, {At: at(1010), WakeID: "b"}, {At: at(1011), WakeID: "b"}},
		2: {{At: at(7000), WakeID: "c"}}, // too late: interval 1 s + slack 5 s
	}
	slow := ev(4, 0, false)
	slow.Answered = at(4000) // ingest took 4 s to accept it: its wake may come 4 s later
	events = append(events, slow)
	arrivals[4] = []Arrival{{At: at(9500), WakeID: "d"}}
	c := Cover(events, arrivals, 5*time.Second)
	if c.E2E[0] != 15*time.Millisecond || c.E2E[1] != 910*time.Millisecond {
		t.Fatalf("e2e %v", c.E2E)
	}
	if len(c.Uncovered) != 2 || c.Uncovered[0] != 2 || c.Uncovered[1] != 3 || c.E2E[2] != -1 || c.E2E[4] != 9500*time.Millisecond {
		t.Fatalf("uncovered %v", c.Uncovered)
	}
	if ids, extra := Duplicates(arrivals); ids != 1 || extra != 1 {
		t.Fatalf("dups %d %d", ids, extra)
	}
	b := Series(events, c.E2E, at(-5))
	if len(b) != 1 || b[0].Sent != 5 || b[0].Accepted != 5 || b[0].E2EP99 != 9500*time.Millisecond {
		t.Fatalf("series %+v", b)
	}
}
