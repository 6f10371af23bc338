package coalesce

import (
	"crypto/sha256"
	"time"

	"github.com/google/uuid"
)

// key is an event id as stored in the dedup set: the 16 bytes of a UUID (every wakepush record
// id is a UUIDv7), or the first 16 bytes of the SHA-256 of any other id. No 64-bit hashing, so a
// collision cannot silently drop an event.
type key [16]byte

func eventKey(id string) key {
	if len(id) == 36 {
		if u, err := uuid.Parse(id); err == nil {
			return key(u)
		}
	}
	s := sha256.Sum256([]byte(id))
	return key(s[:16])
}

// dedupSet remembers event ids for a fixed window. Entries expire in insertion order (a FIFO),
// which is expiry order because the window is the same for every id.
type dedupSet struct {
	window int64
	keys   map[key]struct{}
	fifo   []dedupEntry
	head   int
}

type dedupEntry struct {
	k       key
	expires int64
}

func newDedupSet(window time.Duration) dedupSet {
	return dedupSet{window: window.Nanoseconds(), keys: map[key]struct{}{}}
}

// add records k at time t and reports whether it was new.
func (s *dedupSet) add(k key, t int64) bool {
	if _, ok := s.keys[k]; ok {
		return false
	}
	s.keys[k] = struct{}{}
	if s.head > 1024 && s.head > len(s.fifo)/2 {
		n := copy(s.fifo, s.fifo[s.head:])
		s.fifo, s.head = s.fifo[:n], 0
	}
	s.fifo = append(s.fifo, dedupEntry{k: k, expires: t + s.window})
	return true
}

// expire forgets the ids whose window ended at t.
func (s *dedupSet) expire(t int64) {
	for s.head < len(s.fifo) && s.fifo[s.head].expires <= t {
		delete(s.keys, s.fifo[s.head].k)
		s.head++
	}
	if s.head == len(s.fifo) {
		s.fifo, s.head = s.fifo[:0], 0
	}
}
