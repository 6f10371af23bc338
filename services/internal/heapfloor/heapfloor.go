// Package heapfloor keeps the Go garbage collector's heap goal at or above a floor: after every
// GC cycle it sets GOGC so that the next cycle starts at max(2 × live heap, floor) instead of
// 2 × live heap.
//
// Why: a service whose live heap is a few MB but which allocates tens of MB per second (ingest at
// 20,000 publishes/s: 3 MB live, ~70 MB/s) runs a GC cycle every ~50 ms with the default GOGC=100,
// and each cycle's mark phase holds up the requests in flight for a few ms: the answer latency's
// p90 and p99 (docs/performance.md, "Sixth round"). A floor of tens of MB makes cycles ~20× rarer
// for a fixed, known amount of memory, and changes nothing once the live heap is above half the
// floor. GOMEMLIMIT, when set, still bounds the heap.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapMinimum is the Go runtime's smallest heap goal at GOGC=100 (runtime.defaultHeapMinimum);
// the runtime scales it with GOGC, so a GOGC above floor/heapMinimum × 100 would put the goal above
// the floor by itself (and before the first cycle, with nothing known live, it is the goal).
const heapMinimum = 4 << 20

// Percent returns the GOGC that puts the next GC goal at max(2 × live, floor) as the runtime
// computes goals: live + (live + roots) × GOGC/100, where roots are the goroutine stacks and
// globals it scans, and never below heapMinimum × GOGC/100. That is 100 when 2 × live + roots
// already reaches the floor; above it, the smaller of (floor − live) × 100 / (live + roots) and
// floor × 100 / heapMinimum.
func Percent(live, roots, floor uint64) int {
	const maxFloor = 1 << 50 // 1 PiB: keeps the arithmetic below in range
	floor = min(floor, maxFloor)
	scan := max(live+roots, 1)
	if live >= floor || scan >= floor-live {
		return 100
	}
	p := min((floor-live)*100/scan, floor*100/heapMinimum)
	return int(max(p, 100))
}

// Floor is a running floor; Stop ends it.
type Floor struct {
	floor uint64

	mu      sync.Mutex
	stopped bool
	percent int // the GOGC last set; 0 before the first
	sample  []metrics.Sample
}

// Start sets GOGC for floor bytes now and after every GC cycle until Stop. A floor of 0 does
// nothing.
func Start(floor uint64) *Floor {
	f := &Floor{floor: floor, sample: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	if floor == 0 {
		f.stopped = true
		return f
	}
	f.adjust()
	f.arm()
	return f
}

// Percent is the GOGC the floor set last (0 before the first, or for a zero floor).
func (f *Floor) Percent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.percent
}

// Stop stops adjusting and puts GOGC back to 100. A nil Floor is stopped.
func (f *Floor) Stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	debug.SetGCPercent(100)
}

// arm allocates an object that only the next GC cycle can find unreachable; its cleanup, run
// after that cycle, adjusts GOGC and arms the next one.
func (f *Floor) arm() {
	runtime.AddCleanup(new([32]byte), func(f *Floor) {
		if f.adjust() {
			f.arm()
		}
	}, f)
}

// adjust sets GOGC for the live heap the last cycle found; false once stopped.
func (f *Floor) adjust() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample)
	var v [3]uint64
	for i, s := range f.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	if p := Percent(v[0], v[1]+v[2], f.floor); p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
	return true
}
