package coalesce

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
)

// benchIDs are unique UUIDv7 event ids. At the benchmark's 20k events/s of event time they are
// reused only after 52 s, when the 40 s dedup window has forgotten them.
var benchIDs = sync.OnceValue(func() []string {
	ids := make([]string, 1<<20)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	return ids
})

// BenchmarkEngineEvent measures Event on one partition's engine with a realistic id format, a
// trace link per event, and Due called every 1000 events as the partition runner would:
//
//   - bursts: 100k devices in turn get a burst of 4 events 50 µs apart (a leading wake, three
//     absorbed events and later a trailing wake: one wake per two events, the expensive mix);
//   - hot: 1000 devices get events round-robin, so nearly every event is absorbed.
func BenchmarkEngineEvent(b *testing.B) {
	for _, bc := range []struct {
		name    string
		devices int
		burst   int
	}{
		{"bursts", 100_000, 4},
		{"hot", 1000, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ids := benchIDs()
			devs := make([]string, bc.devices)
			for i := range devs {
				devs[i] = fmt.Sprintf("dev-%032x", i)
			}
			link := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
			e, err := New(Config{MinIntervals: map[string]time.Duration{"app": 10 * time.Second}, DedupWindow: 40 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			now := t0
			var out []WakeDecision
			wakes := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now = now.Add(50 * time.Microsecond)
				out, _ = e.Event(out[:0], now, EventInfo{
					ID:         ids[i&(len(ids)-1)],
					DeviceID:   devs[(i/bc.burst)%bc.devices],
					App:        "app",
					AcceptedAt: now,
					Offset:     int64(i),
					Link:       link,
				})
				wakes += len(out)
				if i%1000 == 0 {
					out = e.Due(out[:0], now)
					wakes += len(out)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(wakes)/float64(b.N), "wakes/event")
		})
	}
}

// BenchmarkTrackedDeviceMemory reports the heap held per tracked device: idle (woken, nothing
// pending) and pending (one absorbed event waiting for its trailing wake).
func BenchmarkTrackedDeviceMemory(b *testing.B) {
	const n = 200_000
	ids := benchIDs()
	devs := make([]string, n)
	for i := range devs {
		devs[i] = fmt.Sprintf("dev-%032x", i)
	}
	for _, pending := range []bool{false, true} {
		name := "idle"
		if pending {
			name = "pending"
		}
		b.Run(name, func(b *testing.B) {
			var perDevice, perID float64
			for range b.N {
				// Dedup memory is reported apart: a long window would otherwise dominate.
				e, _ := New(Config{MinIntervals: map[string]time.Duration{"app": 10 * time.Second}})
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for i := range n {
					e.Event(nil, t0, EventInfo{ID: ids[2*i], DeviceID: devs[i], App: "app", AcceptedAt: t0, Offset: int64(2 * i)})
					if pending {
						e.Event(nil, t0.Add(time.Millisecond), EventInfo{ID: ids[2*i+1], DeviceID: devs[i], App: "app", AcceptedAt: t0, Offset: int64(2*i + 1)})
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				events := n
				if pending {
					events = 2 * n
				}
				seen := float64(len(e.seen.keys))
				// Measure the dedup set on its own to split the total.
				s := newDedupSet(time.Minute)
				runtime.GC()
				var b1, b2 runtime.MemStats
				runtime.ReadMemStats(&b1)
				for i := range events {
					s.add(eventKey(ids[i]), 0)
				}
				runtime.GC()
				runtime.ReadMemStats(&b2)
				perID = float64(b2.HeapAlloc-b1.HeapAlloc) / float64(events)
				perDevice = (float64(after.HeapAlloc-before.HeapAlloc) - perID*seen) / n
				runtime.KeepAlive(e)
				runtime.KeepAlive(&s)
			}
			b.ReportMetric(perDevice, "B/device")
			b.ReportMetric(perID, "B/seen-id")
		})
	}
}
