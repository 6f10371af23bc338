package analysis

import (
	"testing"
	"time"
)

func TestOracleDeviceWakes(t *testing.T) {
	events := []Event{ev(1, 0, false), ev(1, 100, false), ev(2, 0, false), ev(1, 5000, true), ev(3, 0, false)}
	events[4].Accepted = false
	per, _ := OracleDeviceWakes(events, 0)
	// device 1: 0, trailing 1000, urgent 5000; device 2: 0; device 3: nothing accepted
	if len(per) != 2 || per[1] != 3 || per[2] != 1 {
		t.Fatalf("per device %v, want 1:3 2:1", per)
	}
}

func TestCoverGrace(t *testing.T) {
	e := ev(1, 0, false) // interval 1 s, answered at 1 ms
	arrivals := map[int32][]Arrival{1: {{At: at(9000), WakeID: "w"}}}
	if c := Cover([]Event{e}, arrivals, time.Second); len(c.Uncovered) != 1 {
		t.Fatalf("a wake 9 s later is late without grace: %+v", c)
	}
	e.Grace = 7 * time.Second
	if c := Cover([]Event{e}, arrivals, time.Second); len(c.Uncovered) != 0 || c.E2E[0] != 9*time.Second {
		t.Fatalf("with 7 s of grace the wake at 9 s covers it: %+v", c)
	}
}

func TestRecovered(t *testing.T) {
	w := func(sent, covered int) Waiting {
		c := time.Time{}
		if covered >= 0 {
			c = at(covered)
		}
		return Waiting{Intended: at(sent), Covered: c}
	}
	const thr, win = time.Second, 5 * time.Second
	cases := []struct {
		name  string
		ws    []Waiting
		from  int
		want  time.Duration
		ok    bool
		until int
	}{
		{name: "healthy throughout", ws: []Waiting{w(0, 100), w(10000, 10500)}, from: 5000, want: 0, ok: true, until: 60000},
		{name: "stalled until 40 s", ws: []Waiting{w(10000, 40000), w(20000, 40050), w(41000, 41100)}, from: 30000, want: 10050 * time.Millisecond, ok: true, until: 60000},
		{name: "a blip more than a window later is not the recovery",
			ws: []Waiting{w(10000, 35000), w(45000, 47000)}, from: 30000, want: 5 * time.Second, ok: true, until: 60000},
		{name: "a blip within the window moves the recovery",
			ws: []Waiting{w(10000, 35000), w(37000, 39000)}, from: 30000, want: 9 * time.Second, ok: true, until: 60000},
		{name: "slow but under the threshold", ws: []Waiting{w(29000, 29900), w(30000, 30900)}, from: 29500, want: 0, ok: true, until: 60000},
		{name: "never covered", ws: []Waiting{w(10000, -1)}, from: 20000, ok: false, until: 60000},
		{name: "recovers too late to see a window", ws: []Waiting{w(10000, 58000)}, from: 20000, ok: false, until: 60000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Recovered(c.ws, at(c.from), at(c.until), thr, win)
			if ok != c.ok || (c.ok && got != c.want) {
				t.Fatalf("Recovered = %s, %v; want %s, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestBursts(t *testing.T) {
	iv := func(int32) time.Duration { return time.Second }
	wk := func(id string, dev int32, ms int, urgent bool) Wake {
		return Wake{ID: id, Device: dev, Created: at(ms), Urgent: urgent}
	}
	wakes := []Wake{
		wk("a", 1, 0, false),
		wk("b", 1, 1000, false), // a trailing wake one interval later: fine
		wk("b", 1, 1000, false), // the same wake produced again (replay): not a burst
		wk("c", 1, 1300, true),  // urgent: bypasses the interval
		wk("d", 1, 2300, false), // an interval after the urgent one: fine
		wk("e", 1, 2800, false), // 500 ms after d: a burst
		wk("f", 2, 0, false),    // another device
		wk("g", 2, 980, false),  // within the tolerance: fine
		wk("h", 3, 5000, false), // out of order input
		wk("i", 3, 4200, false), // 800 ms before h: a burst
	}
	got := Bursts(wakes, iv, 50*time.Millisecond)
	if len(got) != 2 || got[0].Second.ID != "e" || got[0].First.ID != "d" || got[1].Second.ID != "h" || got[1].First.ID != "i" {
		t.Fatalf("bursts %+v, want d→e and i→h (in time order)", got)
	}
}

// TestCoverOfferedWake: a wake the provider mock refused at first is judged by when the pipeline
// first offered it; its end-to-end latency still runs to the accepted arrival.
func TestCoverOfferedWake(t *testing.T) {
	e := ev(1, 0, false) // interval 1 s, answered at 1 ms; slack 1 s: deadline ~2 s
	for _, c := range []struct {
		name          string
		arrival       Arrival
		wantUncovered bool
	}{
		{"accepted late, never refused", Arrival{At: at(2500), WakeID: "w"}, true},
		{"offered in time, refused, accepted late", Arrival{At: at(2500), WakeID: "w", Offered: at(1500)}, false},
		{"offered late too", Arrival{At: at(4000), WakeID: "w", Offered: at(2500)}, true},
		{"an offer after the arrival does not count", Arrival{At: at(2500), WakeID: "w", Offered: at(3000)}, true},
		{"accepted in time", Arrival{At: at(1500), WakeID: "w"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cov := Cover([]Event{e}, map[int32][]Arrival{1: {c.arrival}}, time.Second)
			if got := len(cov.Uncovered) == 1; got != c.wantUncovered {
				t.Fatalf("uncovered %v, want %v (%+v)", got, c.wantUncovered, cov)
			}
			if !c.wantUncovered && cov.E2E[0] != c.arrival.At.Sub(e.Intended) {
				t.Errorf("e2e %v, want the accepted arrival's %v", cov.E2E[0], c.arrival.At.Sub(e.Intended))
			}
		})
	}
}
