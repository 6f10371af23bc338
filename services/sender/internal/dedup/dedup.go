// Package dedup remembers which wakes were recently delivered (accepted by the provider), so a
// wake read twice — Kafka redelivery after a crash or rebalance, a coalescer replay re-emitting
// the same deterministic wake id — is not pushed twice. It is bounded: the oldest ids are
// forgotten first.
package dedup

import (
	"context"
	"sync"
)

// Set is a bounded set of delivered wake ids plus the ids being handled right now.
type Set struct {
	mu       sync.Mutex
	ids      map[string]struct{}
	ring     []string // insertion order, for eviction
	next     int
	inflight map[string]chan struct{}
}

// New returns a set that remembers up to capacity ids (at least 1).
func New(capacity int) *Set {
	capacity = max(capacity, 1)
	return &Set{
		ids:      make(map[string]struct{}, capacity),
		ring:     make([]string, capacity),
		inflight: map[string]chan struct{}{},
	}
}

// Add remembers id as delivered, forgetting the oldest id when full.
func (s *Set) Add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.ids[id] = struct{}{}
}

// Contains reports whether id is remembered as delivered.
func (s *Set) Contains(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}

// Len is the number of ids remembered.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// Claim makes the caller the only handler of wake id: it waits while another goroutine
// handles the same id, then reports whether id was delivered meanwhile (or before). Unless it
// returns an error (ctx ended while waiting), the caller must call release when done, after
// Add if the wake was delivered.
func (s *Set) Claim(ctx context.Context, id string) (delivered bool, release func(), err error) {
	for {
		s.mu.Lock()
		wait, busy := s.inflight[id]
		if !busy {
			_, delivered = s.ids[id]
			done := make(chan struct{})
			s.inflight[id] = done
			s.mu.Unlock()
			return delivered, func() {
				s.mu.Lock()
				delete(s.inflight, id)
				s.mu.Unlock()
				close(done)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
	}
}
