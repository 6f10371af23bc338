package coalesce

import (
	"fmt"
	"runtime"
	"strings"
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
//   - hot: 1000 devices get events round-robin, so nearly every event is absorbed;
//   - bursts-hashed: bursts, with device ids that are not 32 lowercase hex digits.
//
// Device ids are canonical (32 lowercase hex digits) unless the name says hashed.
func BenchmarkEngineEvent(b *testing.B) {
	for _, bc := range []struct {
		name    string
		devices int
		burst   int
	}{
		{"bursts", 100_000, 4},
		{"hot", 1000, 1},
		{"bursts-hashed", 100_000, 4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ids := benchIDs()
			devs := make([]string, bc.devices)
			for i := range devs {
				devs[i] = fmt.Sprintf("%032x", i) // canonical: kept as 16 bytes
				if strings.HasSuffix(bc.name, "-hashed") {
					devs[i] = fmt.Sprintf("dev-%032x", i) // not canonical: hashed, string kept
				}
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

// BenchmarkTrackedDeviceMemory reports the heap held per tracked device over a million devices
// (runtime.MemStats.HeapAlloc after GC, before and after, divided by the devices), with the
// dedup set's share measured apart and subtracted:
//
//   - idle: woken, nothing pending (the steady state of a device between pushes);
//   - pending: plus one absorbed event waiting for its trailing wake (its batch, id string
//     included);
//   - idle-hashed: idle, with device ids that are not 32 lowercase hex digits (kept as strings).
//
// Ids are created inside the measured section, so a string the engine keeps is counted and one
// it drops is not. Run it once: go test -run '^$' -bench TrackedDeviceMemory -benchtime 1x ./coalesce
func BenchmarkTrackedDeviceMemory(b *testing.B) {
	const n = 1_000_000
	for _, bc := range []struct {
		name    string
		pending bool
		hashed  bool
	}{
		{"idle", false, false},
		{"pending", true, false},
		{"idle-hashed", false, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			devID := func(i int) string {
				if bc.hashed {
					return fmt.Sprintf("device-%d", i)
				}
				return fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, uint64(i))
			}
			evID := func(i int) string { return fmt.Sprintf("01900000-0000-7000-8000-%012x", i) }
			var perDevice, perID float64
			for range b.N {
				events := n
				if bc.pending {
					events = 2 * n
				}
				// The dedup set's share, measured on its own with as many ids.
				runtime.GC()
				var b1, b2 runtime.MemStats
				runtime.ReadMemStats(&b1)
				s := newDedupSet(time.Minute)
				for i := range events {
					s.add(eventKey(evID(i)), 0)
				}
				runtime.GC()
				runtime.ReadMemStats(&b2)
				perID = float64(b2.HeapAlloc-b1.HeapAlloc) / float64(events)
				runtime.KeepAlive(&s)
				s = dedupSet{}

				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				e, _ := New(Config{MinIntervals: map[string]time.Duration{"app": 10 * time.Second}})
				var out []WakeDecision
				for i := range n {
					dev := devID(i)
					out, _ = e.Event(out[:0], t0, EventInfo{ID: evID(2 * i), DeviceID: dev, App: "app", AcceptedAt: t0, Offset: int64(2 * i)})
					if bc.pending {
						e.Event(nil, t0.Add(time.Millisecond), EventInfo{ID: evID(2*i + 1), DeviceID: dev, App: "app", AcceptedAt: t0, Offset: int64(2*i + 1)})
					}
				}
				out = nil
				runtime.GC()
				runtime.ReadMemStats(&after)
				if e.Devices() != n {
					b.Fatalf("%d devices tracked, want %d", e.Devices(), n)
				}
				perDevice = (float64(after.HeapAlloc) - float64(before.HeapAlloc) - perID*float64(e.SeenIDs())) / n
				runtime.KeepAlive(e)
			}
			b.ReportMetric(perDevice, "B/device")
			b.ReportMetric(perID, "B/seen-id")
		})
	}
}
