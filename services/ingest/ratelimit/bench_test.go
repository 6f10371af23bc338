package ratelimit_test

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/wakepush/wakepush/services/ingest/ratelimit"
)

// BenchmarkAllow: Allow (with time.Now) from GOMAXPROCS goroutines over a key space that fits
// the table (hits), one 16 times its size (every miss evicts: a flood of new addresses), and a
// single key (every caller on one shard).
func BenchmarkAllow(b *testing.B) {
	const maxKeys = 1 << 16
	for _, bc := range []struct {
		name string
		keys int
	}{
		{"keys=10k/fits", 10_000},
		{"keys=1M/churn", 1 << 20},
		{"keys=1/one-shard", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			keys := make([]string, bc.keys)
			for i := range keys {
				keys[i] = fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff)
			}
			l := ratelimit.New(ratelimit.Rate{PerSecond: 10, Burst: 50}, ratelimit.Options{MaxKeys: maxKeys})
			for _, k := range keys[:min(len(keys), maxKeys)] {
				l.Allow(k)
			}
			var seed atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 0))
				for pb.Next() {
					l.Allow(keys[rng.IntN(len(keys))])
				}
			})
			b.StopTimer()
			st := l.Stats()
			b.ReportMetric(float64(st.IdleEvicted+st.FullEvicted+st.ActiveEvicted)/float64(b.N), "evictions/op")
		})
	}
}
