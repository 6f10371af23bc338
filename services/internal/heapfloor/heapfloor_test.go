package heapfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

const mib = 1 << 20

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		name               string
		live, roots, floor uint64
		want               int
	}{
		{"live at half the floor: the default", 32 * mib, 0, 64 * mib, 100},
		{"live and roots reach the floor", 30 * mib, 4 * mib, 64 * mib, 100},
		{"live above the floor", 200 * mib, 0, 64 * mib, 100},
		{"16 MiB live", 16 * mib, 0, 64 * mib, 300},
		{"roots count in the goal", 10 * mib, 10 * mib, 64 * mib, 270},
		{"3 MiB live: heapMinimum × GOGC bounds it", 3 * mib, 512 << 10, 64 * mib, 1600},
		{"no live heap yet: the heapMinimum bound", 0, 0, 64 * mib, 1600},
		{"floor under twice heapMinimum", 1 * mib, 0, 6 * mib, 150},
		{"floor at heapMinimum", 1 * mib, 0, 4 * mib, 100},
		{"huge floor", 1, 0, math.MaxUint64, 1 << 50 * 100 / (4 << 20)},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Percent(c.live, c.roots, c.floor)
			if p != c.want {
				t.Fatalf("Percent(%d, %d, %d) = %d, want %d", c.live, c.roots, c.floor, p, c.want)
			}
			if c.floor > 1<<50 || p == 100 {
				return
			}
			// The goal the runtime derives from it is at most the floor, and within 1 % of it
			// unless twice the live heap is above (then GOGC is 100).
			goal := max(float64(heapMinimum)*float64(p)/100, float64(c.live)+float64(c.live+c.roots)*float64(p)/100)
			if goal > float64(c.floor)*1.0001 || goal < 0.99*float64(c.floor) {
				t.Errorf("goal %.0f for floor %d", goal, c.floor)
			}
		})
	}
}

// gogc reads the runtime's current GOGC.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func waitGOGC(t *testing.T, ok func(int) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(gogc()) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is %d, want %s", gogc(), what)
		}
		runtime.GC() // the floor adjusts after each cycle
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFloorFollowsTheLiveHeap runs a floor in the test process: with a small live heap GOGC goes
// up, once the live heap passes half the floor it comes back to 100, and Stop restores 100 for
// good.
func TestFloorFollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(100)
	f := Start(256 * mib)
	defer f.Stop()
	waitGOGC(t, func(p int) bool { return p > 100 }, "above 100 with a small live heap")
	if f.Percent() != gogc() {
		t.Errorf("Percent() = %d, runtime GOGC %d", f.Percent(), gogc())
	}

	live := make([]byte, 200*mib) // above half the floor
	for i := range live {
		live[i] = 1
	}
	waitGOGC(t, func(p int) bool { return p == 100 }, "100 with a live heap above half the floor")
	runtime.KeepAlive(live)
	live = nil

	waitGOGC(t, func(p int) bool { return p > 100 }, "above 100 again once the heap is small")
	f.Stop()
	if got := gogc(); got != 100 {
		t.Fatalf("after Stop GOGC = %d, want 100", got)
	}
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := gogc(); got != 100 {
		t.Errorf("GC cycles after Stop set GOGC to %d", got)
	}
}

func TestZeroFloorDoesNothing(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	f := Start(0)
	runtime.GC()
	if f.Percent() != 0 || gogc() != 100 {
		t.Errorf("zero floor: Percent %d, GOGC %d", f.Percent(), gogc())
	}
	f.Stop()
}
