package apnsmock

import (
	"hash/maphash"
	"sync"
	"time"
)

// pushStore is a bounded ring buffer of accepted pushes.
type pushStore struct {
	mu    sync.Mutex
	max   int // < 0: keep nothing
	buf   []Push
	next  int // overwrite position once len(buf) == max
	total uint64
}

func newPushStore(max int) *pushStore {
	if max == 0 {
		max = DefaultMaxRecords
	}
	return &pushStore{max: max}
}

func (s *pushStore) add(p Push) {
	s.mu.Lock()
	s.total++
	switch {
	case s.max < 0:
	case len(s.buf) < s.max:
		s.buf = append(s.buf, p)
	default:
		s.buf[s.next] = p
		s.next = (s.next + 1) % s.max
	}
	s.mu.Unlock()
}

// all returns the records in arrival order, only those for token if non-empty.
func (s *pushStore) all(token string) []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Push, 0)
	visit := func(ps []Push) {
		for i := range ps {
			if token == "" || ps[i].Token == token {
				out = append(out, ps[i])
			}
		}
	}
	visit(s.buf[s.next:])
	visit(s.buf[:s.next])
	return out
}

func (s *pushStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

func (s *pushStore) accepted() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func (s *pushStore) reset() {
	s.mu.Lock()
	s.buf, s.next, s.total = nil, 0, 0
	s.mu.Unlock()
}

// deviceLimiter is a sharded fixed-window counter of accepted pushes per
// device token.
type deviceLimiter struct {
	seed     maphash.Seed
	sweepMin int // shard size above which expired windows are swept
	shards   [64]limiterShard
}

type limiterShard struct {
	mu        sync.Mutex
	m         map[string]*deviceWindow
	nextSweep int
}

type deviceWindow struct {
	start time.Time
	n     int
}

func newDeviceLimiter() *deviceLimiter {
	return &deviceLimiter{seed: maphash.MakeSeed(), sweepMin: 1 << 14}
}

func (l *deviceLimiter) allow(token string, now time.Time, limit int, window time.Duration) bool {
	sh := &l.shards[maphash.String(l.seed, token)%uint64(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[string]*deviceWindow)
	}
	w := sh.m[token]
	if w == nil {
		if len(sh.m) >= max(sh.nextSweep, l.sweepMin) {
			for k, v := range sh.m {
				if now.Sub(v.start) >= window {
					delete(sh.m, k)
				}
			}
			sh.nextSweep = 2 * len(sh.m) // amortised O(1) per insert
		}
		w = &deviceWindow{start: now}
		sh.m[token] = w
	} else if now.Sub(w.start) >= window {
		w.start, w.n = now, 0
	}
	if w.n >= limit {
		return false
	}
	w.n++
	return true
}

func (l *deviceLimiter) reset() {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		sh.m, sh.nextSweep = nil, 0
		sh.mu.Unlock()
	}
}
