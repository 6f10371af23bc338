package registry

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

// The benchmarks compare the store with the layout it replaced (oldTable, in store_test.go:
// map[string]Device) on what the sender holds in production: canonical device ids, 64-hex APNs
// tokens, one registration a device.
//
//	go test -run '^$' -bench 'StoreMemory' -benchtime 1x ./sender/internal/registry/
//	go test -run '^$' -bench 'StoreGet' ./sender/internal/registry/

type layout interface {
	apply(*wakepushv1.Registration) bool
	get(deviceID string) (Device, bool)
}

// lockedOld is oldTable behind the RWMutex Table had, so that get costs what Table.Get did.
type lockedOld struct {
	mu sync.RWMutex
	t  *oldTable
}

func (l *lockedOld) apply(reg *wakepushv1.Registration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.apply(reg)
}

func (l *lockedOld) get(id string) (Device, bool) {
	l.mu.RLock()
	d, ok := l.t.devices[id]
	l.mu.RUnlock()
	return d, ok
}

var layouts = []struct {
	name string
	new  func() layout
}{
	{"store", func() layout { return newStore() }},
	{"old-map", func() layout { return &lockedOld{t: newOldTable()} }},
}

// benchRecord is the registration of a random device, its strings allocated one by one as
// the protobuf decoder does.
func benchRecord(rnd *rand.Rand, at time.Time) *wakepushv1.Registration {
	var b [16 + 16 + 32]byte
	for i := 0; i < len(b); i += 8 {
		v := rnd.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	ts := records.Timestamp(at)
	return &wakepushv1.Registration{DeviceId: hex.EncodeToString(b[:16]), RegistrationId: hex.EncodeToString(b[16:32]),
		App: "im.wakepush.bench", Platform: wakepushv1.Platform_PLATFORM_APNS, Environment: wakepushv1.Environment_ENVIRONMENT_PRODUCTION,
		Token: hex.EncodeToString(b[32:]), State: wakepushv1.RegistrationState_REGISTRATION_STATE_ACTIVE, CreatedAt: ts, RegisteredAt: ts}
}

// fill applies n random devices of regs registrations each to l and returns the time the
// applies took; ids, when not nil, receives the devices' ids. A device's registrations are
// applied 1000 devices apart (as in the topic: they were written at different times).
func fill(l layout, n, regs int, ids *[]string) (took time.Duration) {
	rnd := rand.New(rand.NewPCG(1, 2))
	at := time.Unix(1_800_000_000, 0)
	const devices = 1000
	batch := make([]*wakepushv1.Registration, 0, devices*regs)
	for done := 0; done < n; {
		batch = batch[:0]
		for ; len(batch) < devices && done < n; done++ {
			r := benchRecord(rnd, at)
			batch = append(batch, r)
			if ids != nil {
				*ids = append(*ids, r.DeviceId)
			}
		}
		firsts := len(batch)
		for range regs - 1 {
			for _, r := range batch[:firsts] {
				more := benchRecord(rnd, at)
				more.DeviceId, more.Token = strings.Clone(r.DeviceId), strings.Clone(r.Token)
				batch = append(batch, more)
			}
		}
		start := time.Now()
		for _, r := range batch {
			l.apply(r)
		}
		took += time.Since(start)
	}
	return took
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// timeGC forces a few garbage collections and returns the fastest one's wall time and the GC
// CPU time (all cores: the marking the table costs) of the same one.
func timeGC() (wall, cpu time.Duration) {
	sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	wall = time.Hour
	for range 5 {
		metrics.Read(sample)
		c0 := sample[0].Value.Float64()
		t0 := time.Now()
		runtime.GC()
		w := time.Since(t0)
		metrics.Read(sample)
		if w < wall {
			wall, cpu = w, time.Duration((sample[0].Value.Float64()-c0)*float64(time.Second))
		}
	}
	return wall, cpu
}

// BenchmarkStoreMemory fills a table of 1,000,000 devices (of one registration, and of two:
// "-2regs") and reports the heap it holds per device (B/device), the time of applying a record
// (ns/apply) and of a forced GC with the table live (gc-ms wall, gc-cpu-ms on all cores).
// "none" is the GC of the test binary alone.
func BenchmarkStoreMemory(b *testing.B) {
	const n = 1_000_000
	b.Run("none", func(b *testing.B) {
		for range b.N {
			wall, cpu := timeGC()
			b.ReportMetric(float64(wall)/1e6, "gc-ms")
			b.ReportMetric(float64(cpu)/1e6, "gc-cpu-ms")
		}
	})
	for _, regs := range []int{1, 2} {
		for _, lt := range layouts {
			name := lt.name
			if regs > 1 {
				name += "-2regs"
			}
			b.Run(name, func(b *testing.B) { benchMemory(b, lt.new, n, regs) })
		}
	}
}

func benchMemory(b *testing.B, newLayout func() layout, n, regs int) {
	for range b.N {
		before := heapAlloc()
		l := newLayout()
		took := fill(l, n, regs, nil)
		after := heapAlloc()
		wall, cpu := timeGC()
		if _, ok := l.get("0123456789abcdef0123456789abcdef"); ok {
			b.Fatal("an unknown device")
		}
		runtime.KeepAlive(l)
		b.ReportMetric(float64(after-before)/float64(n), "B/device")
		b.ReportMetric(float64(took.Nanoseconds())/float64(n*regs), "ns/apply")
		b.ReportMetric(float64(wall)/1e6, "gc-ms")
		b.ReportMetric(float64(cpu)/1e6, "gc-cpu-ms")
	}
}

// BenchmarkStoreGet reads random devices of a table of 1,000,000 (cache misses dominate) and of
// 10,000 (the CPU's part).
func BenchmarkStoreGet(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		for _, lt := range layouts {
			b.Run(fmt.Sprintf("%s/%d", lt.name, n), func(b *testing.B) {
				l := lt.new()
				ids := make([]string, 0, n)
				fill(l, n, 1, &ids)
				rand.New(rand.NewPCG(3, 4)).Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					d, ok := l.get(ids[i])
					if !ok || !d.Active() || len(d.Token) != 64 {
						b.Fatalf("device %s: %+v %v", ids[i], d, ok)
					}
					if i++; i == n {
						i = 0
					}
				}
			})
		}
	}
}
