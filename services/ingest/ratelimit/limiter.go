// Package ratelimit is a set of token buckets by key (per client address, tenant, sender
// domain, device, account), bounded in memory and safe for concurrent use.
//
// Each key has a golang.org/x/time/rate bucket. Keys are spread over independently locked
// shards by a randomly seeded hash (so no single lock serialises the callers, and nobody who
// does not know the seed can aim keys at one shard). Each shard keeps its keys in
// least-recently-used order and holds at most MaxKeys/shards of them:
//
//   - Sweeping is incremental: every call first drops at most two keys from the least recently
//     used end whose buckets have refilled completely (at the latest Burst/PerSecond after their
//     last use). A full bucket is exactly what a new key gets, so dropping it changes no
//     decision. No call ever walks the table.
//   - A new key in a full shard evicts, among the 8 least recently used keys of the shard, the
//     first whose bucket is full (lossless again). When none of them is full, the shard is full
//     of keys in use: its least recently used key is evicted anyway and counted as an "active"
//     eviction. At worst that key starts again with a fresh burst when it returns, exactly like
//     a key never seen; every other key keeps its bucket. The table is never cleared.
//
// So a key's decisions are those of an unbounded set of buckets as long as no shard sees more
// distinct keys within Burst/PerSecond than it holds. Beyond that, a key loses its bucket only
// once as many other keys of its shard as the shard holds have been used since its own last
// use.
package ratelimit

import (
	"hash/maphash"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the default bound on the number of buckets of a Limiter.
const DefaultMaxKeys = 1 << 16

const (
	maxShards     = 64
	minShardKeys  = 64 // fewer shards for small tables, so that LRU order stays meaningful
	sweepPerCall  = 2  // idle keys dropped per call at most: more than the one a call can add
	evictionProbe = 8  // least recently used keys examined for a full bucket before evicting one in use
)

// Options configures a Limiter.
type Options struct {
	// Name labels the limiter's metrics (attribute "limiter"); empty: no metrics.
	Name string
	// MaxKeys bounds the number of buckets (DefaultMaxKeys when ≤ 0). It is rounded up to a
	// multiple of the number of shards.
	MaxKeys int
	// Shards is the number of independently locked parts, rounded up to a power of two
	// (default: 64, fewer when MaxKeys is small so that each shard holds at least 64 keys).
	Shards int
}

// Limiter is a set of token buckets by key. The zero value is not usable; call New.
type Limiter struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu    sync.Mutex
	m     map[string]*entry
	root  entry // sentinel of the LRU ring: root.next is the most, root.prev the least recently used
	cap   int
	stats Stats
	_     [64]byte // keeps neighbouring shards' locks off one cache line
}

type entry struct {
	key        string
	lim        *rate.Limiter
	used       time.Time // latest time the key was used; never moves backwards
	full       time.Time // the bucket is full from then on, unless used again
	prev, next *entry
}

// Stats are a limiter's counters since New.
type Stats struct {
	Keys        int   // buckets held now
	Denied      int64 // calls answered false
	IdleEvicted int64 // dropped by the incremental sweep (idle long enough to be full)
	FullEvicted int64 // evicted for a new key, bucket full: no decision changes
	// ActiveEvicted counts keys evicted for a new key while their bucket was not full: the
	// table was full of keys in use; the evicted key gets a fresh burst if it returns.
	ActiveEvicted int64
}

// New returns a limiter of rate r per key. A Burst below 1 counts as 1.
func New(r Rate, opts Options) *Limiter {
	l := &Limiter{}
	if r.Unlimited() {
		return l
	}
	l.limit, l.burst = rate.Limit(r.PerSecond), max(1, r.Burst)
	l.seed = maphash.MakeSeed()
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := opts.Shards
	if n <= 0 {
		n = maxShards
		for n > 1 && maxKeys/n < minShardKeys {
			n /= 2
		}
	}
	n = 1 << bits.Len(uint(n-1)) // power of two
	l.mask = uint64(n - 1)
	l.shards = make([]shard, n)
	per := (maxKeys + n - 1) / n
	for i := range l.shards {
		s := &l.shards[i]
		s.m = make(map[string]*entry)
		s.root.next, s.root.prev = &s.root, &s.root
		s.cap = per
	}
	if opts.Name != "" {
		registerMetrics(opts.Name, l)
	}
	return l
}

// Allow is AllowAt(key, time.Now()).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	return l.AllowAt(key, time.Now())
}

// AllowAt takes a token from key's bucket at now and reports whether there was one. When there
// was not, retryAfter is how long until the bucket holds one again (a call at now+retryAfter
// succeeds unless another call for the key takes the token first); it is 0 when ok.
func (l *Limiter) AllowAt(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l.shards == nil {
		return true, 0
	}
	s := &l.shards[maphash.String(l.seed, key)&l.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	e := s.m[key]
	if e == nil {
		if len(s.m) >= s.cap {
			e = s.evict(now) // its memory is reused
			*e = entry{}
		} else {
			e = new(entry)
		}
		e.key, e.lim, e.used = strings.Clone(key), rate.NewLimiter(l.limit, l.burst), now
		s.m[e.key] = e
		s.pushFront(e)
	} else if s.root.next != e {
		s.unlink(e)
		s.pushFront(e)
	}
	if now.After(e.used) {
		e.used = now
	}
	ok = e.lim.AllowN(now, 1)
	// Kept in the entry so that sweeping and eviction need not touch the (cold) limiter.
	tokens := e.lim.TokensAt(e.used)
	e.full = e.used.Add(durationOf(float64(l.burst)-tokens, float64(l.limit)))
	if ok {
		return true, 0
	}
	s.stats.Denied++
	return false, durationOf(1-tokens, float64(l.limit))
}

// Stats returns the limiter's counters (locking each shard in turn).
func (l *Limiter) Stats() Stats {
	var t Stats
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		t.Keys += len(s.m)
		t.Denied += s.stats.Denied
		t.IdleEvicted += s.stats.IdleEvicted
		t.FullEvicted += s.stats.FullEvicted
		t.ActiveEvicted += s.stats.ActiveEvicted
		s.mu.Unlock()
	}
	return t
}

// sweep drops up to sweepPerCall keys with full buckets from the LRU end.
func (s *shard) sweep(now time.Time) {
	for range sweepPerCall {
		e := s.root.prev
		if e == &s.root || now.Before(e.full) {
			return
		}
		s.remove(e)
		s.stats.IdleEvicted++
	}
}

// evict makes room for one key and returns the entry it removed: the first full bucket among
// the evictionProbe least recently used, else the least recently used.
func (s *shard) evict(now time.Time) *entry {
	e := s.root.prev
	for range evictionProbe {
		if e == &s.root {
			break
		}
		if !now.Before(e.full) {
			s.remove(e)
			s.stats.FullEvicted++
			return e
		}
		e = e.prev
	}
	e = s.root.prev
	s.remove(e)
	s.stats.ActiveEvicted++
	return e
}

func (s *shard) pushFront(e *entry) {
	e.prev, e.next = &s.root, s.root.next
	s.root.next.prev = e
	s.root.next = e
}

func (s *shard) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *shard) remove(e *entry) {
	s.unlink(e)
	delete(s.m, e.key)
}

// durationOf is how long n tokens take to accumulate at perSecond, rounded up to the
// nanosecond (and to at least 1 ns for n > 0).
func durationOf(n, perSecond float64) time.Duration {
	if n <= 0 {
		return 0
	}
	ns := math.Ceil(n / perSecond * float64(time.Second))
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(max(1, ns))
}
