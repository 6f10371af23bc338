package coalesce

// timerHeap is a binary min-heap of tracked devices (slab indices) by deadline. Each device is
// in it at most once and knows its index (hidx, -1 when absent), so moving a timer is
// O(log n) without searching.
type timerHeap struct {
	h    []int32
	slab *[]device
}

func (t *timerHeap) len() int { return len(t.h) }

// top returns the device with the earliest deadline (the heap must not be empty).
func (t *timerHeap) top() int32 { return t.h[0] }

// set inserts d or moves it after its deadline changed.
func (t *timerHeap) set(idx int32) {
	d := &(*t.slab)[idx]
	if d.hidx < 0 {
		d.hidx = int32(len(t.h))
		t.h = append(t.h, idx)
		t.up(int(d.hidx))
		return
	}
	if i := int(d.hidx); !t.down(i) {
		t.up(i)
	}
}

// remove takes d out of the heap.
func (t *timerHeap) remove(idx int32) {
	slab := *t.slab
	i, n := int(slab[idx].hidx), len(t.h)-1
	if i != n {
		t.swap(i, n)
	}
	t.h = t.h[:n]
	slab[idx].hidx = -1
	if i != n {
		if !t.down(i) {
			t.up(i)
		}
	}
}

func (t *timerHeap) less(i, j int) bool {
	slab := *t.slab
	return slab[t.h[i]].deadline < slab[t.h[j]].deadline
}

func (t *timerHeap) swap(i, j int) {
	h, slab := t.h, *t.slab
	h[i], h[j] = h[j], h[i]
	slab[h[i]].hidx = int32(i)
	slab[h[j]].hidx = int32(j)
}

func (t *timerHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !t.less(j, i) {
			break
		}
		t.swap(i, j)
		j = i
	}
}

// down sifts element i down and reports whether it moved.
func (t *timerHeap) down(i0 int) bool {
	i, n := i0, len(t.h)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		j := l
		if r := l + 1; r < n && t.less(r, l) {
			j = r
		}
		if !t.less(j, i) {
			break
		}
		t.swap(i, j)
		i = j
	}
	return i > i0
}
