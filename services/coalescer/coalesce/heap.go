package coalesce

// timerHeap is a binary min-heap of devices by deadline. Each device is in it at most once and
// knows its index (hidx, -1 when absent), so moving a timer is O(log n) without searching.
type timerHeap []*device

// set inserts d or moves it after its deadline changed.
func (h *timerHeap) set(d *device) {
	if d.hidx < 0 {
		d.hidx = len(*h)
		*h = append(*h, d)
		h.up(d.hidx)
		return
	}
	if !h.down(d.hidx) {
		h.up(d.hidx)
	}
}

// remove takes d out of the heap.
func (h *timerHeap) remove(d *device) {
	i, n := d.hidx, len(*h)-1
	if i != n {
		h.swap(i, n)
	}
	(*h)[n] = nil
	*h = (*h)[:n]
	d.hidx = -1
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h timerHeap) less(i, j int) bool { return h[i].deadline < h[j].deadline }

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx = i
	h[j].hidx = j
}

func (h timerHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

// down sifts element i down and reports whether it moved.
func (h timerHeap) down(i0 int) bool {
	i, n := i0, len(h)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}
