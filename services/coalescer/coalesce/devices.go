package coalesce

import (
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
)

// Tracked devices are stored compactly, because a partition may track a million of them (the
// devices woken in the last interval):
//
//   - a slab of 32-byte device structs (no pointers, so the GC does not scan it), reused
//     through a free list;
//   - an open-addressing hash table (linear probing, backward-shift deletion) of 4-byte slab
//     indices, kept between 3/8 and 3/4 full, keyed by the device's 16-byte key;
//   - the timer heap, 4-byte slab indices (heap.go).
//
// The key of a canonical device id (32 lowercase hex digits: the 128-bit ids wakepush issues)
// is its 16 bytes, and the id string is rebuilt when a wake is emitted. Any other id is keyed
// by the first 16 bytes of its SHA-256 and its string is kept in a side map (names), so it costs
// more but works. Pending batches live in a side map too (pending): only devices with absorbed
// events pay for them.

// dkey is a device id as stored.
type dkey [16]byte

// deviceKey returns the key of a device id and whether the id is canonical (the key is its
// bytes, so the id can be rebuilt from it).
func deviceKey(id string) (k dkey, canonical bool) {
	if len(id) == 32 && isLowerHex(id) {
		hex.Decode(k[:], []byte(id))
		return k, true
	}
	s := sha256.Sum256([]byte(id))
	return dkey(s[:16]), false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// device flags.
const (
	fHashed uint8 = 1 << iota // the key is a hash: the id string is in Engine.names
)

// device is the state of one tracked device: 32 bytes, no pointers.
type device struct {
	key dkey
	// deadline is the device's single timer, in ns since the Unix epoch: last wake (of any
	// reason) + the app's interval.
	deadline int64
	hidx     int32  // index in the timer heap; -1 when absent
	app      uint16 // index in Engine.appList
	flags    uint8
}

// deviceTable maps device keys to slab indices.
type deviceTable struct {
	slots []int32 // slab index + 1; 0 is empty
	n     int
	seed  maphash.Seed
}

func (t *deviceTable) home(k *dkey) int {
	return int(maphash.Comparable(t.seed, *k)) & (len(t.slots) - 1)
}

// get returns the slab index of k, or -1.
func (t *deviceTable) get(slab []device, k *dkey) int32 {
	if t.n == 0 {
		return -1
	}
	mask := len(t.slots) - 1
	for i := t.home(k); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return -1
		}
		if slab[s-1].key == *k {
			return s - 1
		}
	}
}

// put adds slab index idx, whose key (slab[idx].key) is not in the table.
func (t *deviceTable) put(slab []device, idx int32) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow(slab)
	}
	mask := len(t.slots) - 1
	i := t.home(&slab[idx].key)
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = idx + 1
	t.n++
}

func (t *deviceTable) grow(slab []device) {
	old := t.slots
	t.slots = make([]int32, max(64, 2*len(old)))
	mask := len(t.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := t.home(&slab[s-1].key)
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// del removes slab index idx (present) from the table.
func (t *deviceTable) del(slab []device, idx int32) {
	mask := len(t.slots) - 1
	i := t.home(&slab[idx].key)
	for t.slots[i] != idx+1 {
		i = (i + 1) & mask
	}
	// Backward-shift deletion: move later entries of the probe run into the hole when their
	// home position is not after the hole (cyclically).
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		h := t.home(&slab[t.slots[j]-1].key)
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
	t.n--
}
