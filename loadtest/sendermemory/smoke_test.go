package sendermemory

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestSmoke runs the whole measurement at 20,000 devices with 1 and 2 instances and the
// rebalance check, with the real binaries (built like the test), and checks that every figure is
// there: each group's instances hold every device once between them, every partition has an
// owner, the memory figures are read, and every wake of the rebalance check is pushed exactly
// once, and that the assignment is sticky (the joining instance takes only its share). It
// asserts no memory or time figure. The instances of a group start at once, as in the full
// measurement: an instance whose first assignment is revoked and dropped while still loading
// must still become ready.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sender, the broker and the mock")
	}
	const n = 20_000
	began := time.Now()
	rep, err := Run(context.Background(), Options{
		Devices: []int{n}, Instances: []int{1, 2}, Partitions: 4, Retain: 2 * time.Second, StableFor: 2 * time.Second,
		StableTimeout: 3 * time.Minute, WakeTimeout: 2 * time.Minute, Dir: t.TempDir(), Logf: t.Logf,
		Build: func(pkg string) (string, error) { return stacktest.Build(t, pkg), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	t.Logf("took %s\n%s", time.Since(began).Round(time.Millisecond), md.String())
	for _, f := range rep.Failures {
		t.Errorf("failure: %s", f)
	}
	if rep.Baseline == nil || rep.Baseline.Devices != 0 || rep.Baseline.HeapLive <= 0 {
		t.Errorf("baseline %+v", rep.Baseline)
	}
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Groups) != 2 {
		t.Fatalf("rounds %+v, want one with two groups", rep.Rounds)
	}
	for _, g := range rep.Rounds[0].Groups {
		if len(g.Members) != g.Instances {
			t.Errorf("%d instances: %d measured", g.Instances, len(g.Members))
		}
		var sum int64
		var owned [][]int
		for _, m := range g.Members {
			sum += m.Devices
			owned = append(owned, m.Partitions)
			if m.HeapLive <= 0 || m.HeapInuse <= 0 || m.RSS <= 0 || m.VmRSS <= 0 || m.VmHWM < m.VmRSS || m.Ready <= 0 {
				t.Errorf("%d instances, instance %d: %+v", g.Instances, m.Index, m)
			}
			if len(m.Loads) < len(m.Partitions) {
				t.Errorf("%d instances, instance %d: %d loads logged for partitions %v", g.Instances, m.Index, len(m.Loads), m.Partitions)
			}
		}
		if sum != n || !coverExactly(owned, 4) {
			t.Errorf("%d instances: %d devices held, partitions %v", g.Instances, sum, owned)
		}
	}
	rb := rep.Rounds[0].Rebalance
	if rb == nil || len(rb.Wakes) != 4 {
		t.Fatalf("rebalance %+v, want a wake per partition", rb)
	}
	anew := 0
	for _, w := range rb.Wakes {
		if w.Wait < 0 || w.Owner < 1 {
			t.Errorf("wake of partition %d: %+v", w.Partition, w)
		}
		if w.LoadedAnew {
			anew++
		}
	}
	// The assignment is sticky: the third instance takes its share (4 partitions over 3: at
	// most 2), and the two others load nothing anew.
	if anew > 2 {
		t.Errorf("%d of 4 partitions loaded anew after a third instance joined two, want at most 2: %+v", anew, rb.Wakes)
	}
}
