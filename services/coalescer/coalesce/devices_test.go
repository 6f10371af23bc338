package coalesce

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
)

func TestDeviceKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id        string
		canonical bool
	}{
		{"0123456789abcdef0123456789abcdef", true},
		{"0123456789ABCDEF0123456789ABCDEF", false}, // upper case would not round-trip
		{"0123456789abcdef0123456789abcde", false},
		{"dev-1", false},
		{"", false},
	} {
		k, canonical := deviceKey(tc.id)
		if canonical != tc.canonical {
			t.Errorf("%q: canonical %t, want %t", tc.id, canonical, tc.canonical)
		}
		if canonical && fmt.Sprintf("%x", k[:]) != tc.id {
			t.Errorf("%q: key %x does not round-trip", tc.id, k)
		}
	}
	if a, _ := deviceKey("dev-1"); a == (dkey{}) {
		t.Error("hashed key is zero")
	}
}

// TestDeviceTable checks the open-addressing table against a map under random puts and
// deletes of a few thousand keys, so that probe runs, wrap-around and deletions interact.
func TestDeviceTable(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	var slab []device
	var free []int32
	tab := deviceTable{seed: maphash.MakeSeed()}
	ref := map[dkey]int32{}
	keyOf := func(i int) dkey { var k dkey; k[0], k[1] = byte(i), byte(i>>8); return k }
	for step := range 200_000 {
		k := keyOf(r.IntN(3000))
		idx, ok := ref[k]
		if got := tab.get(slab, &k); (ok && got != idx) || (!ok && got != -1) {
			t.Fatalf("step %d: get(%x) = %d, want %d (present %t)", step, k[:2], got, idx, ok)
		}
		if ok {
			tab.del(slab, idx)
			delete(ref, k)
			slab[idx] = device{}
			free = append(free, idx)
		} else {
			if n := len(free); n > 0 {
				idx, free = free[n-1], free[:n-1]
			} else {
				slab = append(slab, device{})
				idx = int32(len(slab) - 1)
			}
			slab[idx].key = k
			tab.put(slab, idx)
			ref[k] = idx
		}
		if tab.n != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, tab.n, len(ref))
		}
	}
	for k, idx := range ref {
		if got := tab.get(slab, &k); got != idx {
			t.Fatalf("get(%x) = %d, want %d", k[:2], got, idx)
		}
	}
}
