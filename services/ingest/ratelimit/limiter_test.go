package ratelimit_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/wakepush/wakepush/services/ingest/ratelimit"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// reference is an unbounded set of buckets: what a Limiter must answer while no eviction
// changes a decision.
type reference struct {
	r ratelimit.Rate
	m map[string]*rate.Limiter
}

func newReference(r ratelimit.Rate) *reference {
	return &reference{r: r, m: map[string]*rate.Limiter{}}
}

func (ref *reference) AllowAt(key string, now time.Time) (bool, time.Duration) {
	b := ref.m[key]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(ref.r.PerSecond), ref.r.Burst)
		ref.m[key] = b
	}
	if b.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration(math.Ceil((1 - b.TokensAt(now)) / ref.r.PerSecond * 1e9))
}

func TestRetryAfter(t *testing.T) {
	type step struct {
		at    time.Duration // after t0
		ok    bool
		retry time.Duration
	}
	for _, tc := range []struct {
		name  string
		rate  ratelimit.Rate
		steps []step
	}{
		{"1/s burst 1", ratelimit.Rate{PerSecond: 1, Burst: 1}, []step{
			{0, true, 0}, {0, false, time.Second}, {250 * time.Millisecond, false, 750 * time.Millisecond},
			{time.Second, true, 0}, {time.Second, false, time.Second},
		}},
		{"10/m burst 3", ratelimit.Rate{PerSecond: 10.0 / 60, Burst: 3}, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, false, 6 * time.Second},
			{time.Second, false, 5 * time.Second}, {6 * time.Second, true, 0}, {6 * time.Second, false, 6 * time.Second},
		}},
		{"0.001/s (a test rate): the wait is long, not 1 s", ratelimit.Rate{PerSecond: 0.001, Burst: 1}, []step{
			{0, true, 0}, {0, false, 1000 * time.Second}, {400 * time.Second, false, 600 * time.Second},
		}},
		{"100/s burst 5", ratelimit.Rate{PerSecond: 100, Burst: 5}, []step{
			{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}, {0, false, 10 * time.Millisecond},
			{5 * time.Millisecond, false, 5 * time.Millisecond}, {10 * time.Millisecond, true, 0},
		}},
		{"burst 0 counts as 1", ratelimit.Rate{PerSecond: 2, Burst: 0}, []step{
			{0, true, 0}, {0, false, 500 * time.Millisecond},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := ratelimit.New(tc.rate, ratelimit.Options{MaxKeys: 16})
			for i, s := range tc.steps {
				ok, retry := l.AllowAt("k", t0.Add(s.at))
				// retry is rounded up to the nanosecond from a float: allow that nanosecond.
				if ok != s.ok || retry < s.retry || retry > s.retry+time.Nanosecond {
					t.Errorf("step %d at +%v: %v, %v; want %v, %v", i, s.at, ok, retry, s.ok, s.retry)
				}
			}
		})
	}
}

// A denied caller that waits exactly retryAfter gets the token, and not a microsecond earlier
// (x/time/rate itself forgives a deficit under a nanosecond).
func TestRetryAfterIsExact(t *testing.T) {
	for _, r := range []ratelimit.Rate{
		{PerSecond: 1, Burst: 1}, {PerSecond: 3, Burst: 2}, {PerSecond: 10.0 / 60, Burst: 10},
		{PerSecond: 1.0 / 3600, Burst: 1}, {PerSecond: 1000, Burst: 50}, {PerSecond: 7.3, Burst: 4},
	} {
		l := ratelimit.New(r, ratelimit.Options{MaxKeys: 16})
		now := t0
		for i := range 200 {
			ok, retry := l.AllowAt("k", now)
			if ok {
				if retry != 0 {
					t.Fatalf("%+v call %d: allowed with retryAfter %v", r, i, retry)
				}
				continue
			}
			if retry <= 0 {
				t.Fatalf("%+v call %d: denied with retryAfter %v", r, i, retry)
			}
			if ok, _ := l.AllowAt("k", now.Add(retry-time.Microsecond)); ok {
				t.Fatalf("%+v call %d: allowed 1 µs before retryAfter %v", r, i, retry)
			}
			now = now.Add(retry)
			if ok, _ := l.AllowAt("k", now); !ok {
				t.Fatalf("%+v call %d: denied at retryAfter %v", r, i, retry)
			}
		}
	}
}

func TestUnlimited(t *testing.T) {
	for _, r := range []ratelimit.Rate{{}, {PerSecond: -1, Burst: 5}, {PerSecond: 0, Burst: 1}} {
		l := ratelimit.New(r, ratelimit.Options{MaxKeys: 1})
		for i := range 1000 {
			if ok, retry := l.AllowAt(fmt.Sprint(i%3), t0); !ok || retry != 0 {
				t.Fatalf("%+v: call %d denied", r, i)
			}
		}
		if st := l.Stats(); st != (ratelimit.Stats{}) {
			t.Errorf("%+v: stats %+v, want none (no buckets)", r, st)
		}
	}
}

type call struct {
	at  time.Duration // after t0
	key string
}

// replay runs calls through l and an unbounded reference, checking that l never holds more
// than maxKeys buckets, and returns the calls whose answers differ.
func replay(t *testing.T, l *ratelimit.Limiter, r ratelimit.Rate, maxKeys int, calls []call) (diffs []string) {
	t.Helper()
	ref := newReference(r)
	for i, c := range calls {
		now := t0.Add(c.at)
		ok, retry := l.AllowAt(c.key, now)
		wok, wretry := ref.AllowAt(c.key, now)
		if ok != wok || retry != wretry {
			diffs = append(diffs, fmt.Sprintf("call %d %s at +%v: %v %v, unbounded %v %v", i, c.key, c.at, ok, retry, wok, wretry))
		}
		if n := l.Stats().Keys; n > maxKeys {
			t.Fatalf("call %d: %d buckets held, bound %d", i, n, maxKeys)
		}
	}
	return diffs
}

// Bounded memory without changing a decision: as long as no shard sees more distinct keys
// within Burst/PerSecond than it holds, every answer equals that of an unbounded set of
// buckets, although far more keys than the bound pass through.
func TestBoundIsLosslessWithinCapacity(t *testing.T) {
	r := ratelimit.Rate{PerSecond: 1, Burst: 3} // a bucket refills completely in 3 s
	const step = 100 * time.Millisecond
	// Per step: 4 keys calling 10 times their rate (their buckets are empty: a reset would show
	// as an extra allowed call), 2 one-shot keys; one-shot keys come back after 50 s (1004 distinct keys).
	// Distinct keys within 3 s: 4 + 2×30 = 64.
	var calls []call
	for s := range 600 {
		at := time.Duration(s) * step
		for h := range 4 {
			calls = append(calls, call{at, fmt.Sprintf("busy-%d", h)})
		}
		for j := range 2 {
			calls = append(calls, call{at, fmt.Sprintf("once-%d", (s*2+j)%1000)})
		}
	}
	for _, tc := range []struct {
		name            string
		maxKeys, shards int
	}{
		{"one shard holding exactly the window", 64, 1},
		{"8 shards with room for the window in each", 8 * 64, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := ratelimit.New(r, ratelimit.Options{MaxKeys: tc.maxKeys, Shards: tc.shards})
			if diffs := replay(t, l, r, tc.maxKeys, calls); len(diffs) > 0 {
				t.Fatalf("%d answers differ from unbounded buckets, first: %s", len(diffs), diffs[0])
			}
			st := l.Stats()
			if st.ActiveEvicted != 0 || st.IdleEvicted == 0 || st.Denied == 0 {
				t.Errorf("stats %+v: want idle evictions, denials, no active eviction", st)
			}
		})
	}
}

// When the table is full of buckets in use, a new key evicts the least recently used one. A key
// is evicted only after as many other distinct keys of its shard as the shard holds were used
// since its own last use: keys in use more often than that keep their buckets however many
// keys churn. At the boundary (one more churning key per round) they are evicted, and the
// documented worst case shows: a fresh burst.
func TestChurnKeepsKeysInUse(t *testing.T) {
	r := ratelimit.Rate{PerSecond: 1, Burst: 3}
	const (
		capacity = 32
		busy     = 4
		step     = 100 * time.Millisecond
	)
	for _, tc := range []struct {
		name      string
		churn     int // new one-shot keys per step (each stays in use, i.e. not full, for 1 s)
		busyReset bool
	}{
		{"capacity-1 other keys between uses: kept", capacity - busy, false},
		{"capacity other keys between uses: evicted", capacity - busy + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []call
			n := 0
			for s := range 300 {
				at := time.Duration(s) * step
				for h := range busy {
					calls = append(calls, call{at, fmt.Sprintf("busy-%d", h)})
				}
				for range tc.churn {
					calls = append(calls, call{at, fmt.Sprintf("churn-%d", n)})
					n++
				}
			}
			l := ratelimit.New(r, ratelimit.Options{MaxKeys: capacity, Shards: 1})
			diffs := replay(t, l, r, capacity, calls)
			if !tc.busyReset && len(diffs) > 0 {
				t.Fatalf("%d answers differ (a busy key lost its bucket), first: %s", len(diffs), diffs[0])
			}
			if st := l.Stats(); st.ActiveEvicted == 0 || (!tc.busyReset && st.Denied == 0) {
				t.Fatalf("stats %+v: the table was never full of buckets in use, or nobody was limited; the test does not test", st)
			}
			if tc.busyReset {
				if len(diffs) == 0 {
					t.Fatal("no answer differs: the busy keys were never evicted")
				}
				if d := diffs[0]; !strings.Contains(d, " busy-") || !strings.Contains(d, ": true 0s, unbounded false") {
					t.Fatalf("first difference %q: want a busy key allowed where unbounded buckets deny (a fresh burst)", d)
				}
			}
		})
	}
}

// Among the least recently used keys, a full bucket is evicted before one in use.
func TestEvictionPrefersFullBuckets(t *testing.T) {
	r := ratelimit.Rate{PerSecond: 1, Burst: 3}
	calls := []call{
		{0, "drained"}, {0, "drained"}, {0, "drained"}, // empty until +3 s
		{0, "light"},                         // 2 tokens left: full at +1 s, more recently used than "drained"
		{1500 * time.Millisecond, "new"},     // full shard: evicts "light" (full), not "drained"
		{1500 * time.Millisecond, "drained"}, // 1.5 tokens: allowed
		{1500 * time.Millisecond, "drained"}, // denied, 500 ms: "drained" kept its bucket
		// Comes back with a full bucket, as unbounded. The shard ("drained", "new") has no full
		// bucket: "new", the least recently used, is evicted in use (2 tokens left).
		{1500 * time.Millisecond, "light"},
	}
	l := ratelimit.New(r, ratelimit.Options{MaxKeys: 2, Shards: 1})
	if diffs := replay(t, l, r, 2, calls); len(diffs) > 0 {
		t.Fatalf("answers differ: %v", diffs)
	}
	if st := l.Stats(); st.FullEvicted != 1 || st.ActiveEvicted != 1 || st.IdleEvicted != 0 || st.Keys != 2 {
		t.Errorf("stats %+v: want 1 full and 1 active eviction, 2 keys", st)
	}
}

// Sweeping is incremental: each call drops at most two idle keys, and idle keys go away while
// the limiter is used.
func TestIncrementalSweep(t *testing.T) {
	r := ratelimit.Rate{PerSecond: 1, Burst: 2} // idle keys are full after 2 s
	l := ratelimit.New(r, ratelimit.Options{MaxKeys: 128, Shards: 1})
	for i := range 100 {
		l.AllowAt(fmt.Sprint("k", i), t0)
	}
	later := t0.Add(2 * time.Second)
	for i, want := range []int{99, 97, 95} { // 2 idle keys dropped per call; x added by the first
		l.AllowAt("x", later)
		if got := l.Stats().Keys; got != want {
			t.Fatalf("after call %d: %d keys, want %d", i+1, got, want)
		}
	}
	for range 60 {
		l.AllowAt("x", later)
	}
	if st := l.Stats(); st.Keys != 1 || st.IdleEvicted != 100 {
		t.Errorf("stats %+v: want only x left, 100 idle evictions", st)
	}
}

// Concurrent callers on shared keys: every bucket hands out exactly its burst at one instant,
// whatever the interleaving, and the bound holds under churn.
func TestConcurrent(t *testing.T) {
	const (
		goroutines = 8
		keys       = 200
		burst      = 5
	)
	l := ratelimit.New(ratelimit.Rate{PerSecond: 1, Burst: burst}, ratelimit.Options{MaxKeys: 4096})
	var mu sync.Mutex
	allowed := map[string]int{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			mine := map[string]int{}
			for i := range 20 * keys {
				k := fmt.Sprint("k", (i*7+g)%keys)
				if ok, _ := l.AllowAt(k, t0); ok {
					mine[k]++
				}
			}
			mu.Lock()
			for k, n := range mine {
				allowed[k] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for i := range keys {
		if n := allowed[fmt.Sprint("k", i)]; n != burst {
			t.Errorf("k%d: %d allowed at one instant, want the burst %d", i, n, burst)
		}
	}

	small := ratelimit.New(ratelimit.Rate{PerSecond: 1, Burst: 1}, ratelimit.Options{MaxKeys: 64, Shards: 4})
	for g := range goroutines {
		wg.Go(func() {
			for i := range 5000 {
				small.AllowAt(fmt.Sprint(g, "-", i), t0.Add(time.Duration(i)*time.Millisecond))
				if i%500 == 0 {
					if n := small.Stats().Keys; n > 64 {
						t.Errorf("%d keys held, bound 64", n)
					}
				}
			}
		})
	}
	wg.Wait()
	if st := small.Stats(); st.Keys > 64 || st.ActiveEvicted == 0 {
		t.Errorf("stats %+v: want ≤ 64 keys and active evictions", st)
	}
}
