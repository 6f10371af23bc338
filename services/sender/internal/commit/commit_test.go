package commit

import (
	"testing"

	"github.com/segmentio/kafka-go"
)

func offsets(msgs []kafka.Message) map[int]int64 {
	m := map[int]int64{}
	for _, msg := range msgs {
		m[msg.Partition] = msg.Offset
	}
	return m
}

func TestCommitsHighestContiguousDone(t *testing.T) {
	tr := New("push.wakes")
	a := tr.Start(0, 10)
	b := tr.Start(0, 11)
	c := tr.Start(0, 12)
	other := tr.Start(1, 5)

	tr.Done(c) // out of order: nothing committable on partition 0
	if got := offsets(tr.Committable()); len(got) != 0 {
		t.Fatalf("committable after out-of-order done = %v, want none", got)
	}
	tr.Done(a)
	if got := offsets(tr.Committable()); got[0] != 10 || len(got) != 1 {
		t.Fatalf("committable = %v, want partition 0 at 10", got)
	}
	tr.Done(b) // 10, 11, 12 all done
	tr.Done(other)
	msgs := tr.Committable()
	if got := offsets(msgs); got[0] != 12 || got[1] != 5 {
		t.Fatalf("committable = %v, want {0:12, 1:5}", got)
	}
	for _, m := range msgs {
		if m.Topic != "push.wakes" {
			t.Errorf("topic = %q", m.Topic)
		}
	}
	tr.Committed(msgs)
	if got := tr.Committable(); len(got) != 0 {
		t.Fatalf("committable after commit = %v, want none", got)
	}
	if tr.Pending() != 0 {
		t.Fatalf("pending = %d, want 0", tr.Pending())
	}
}

func TestRefetchStartsNewEpoch(t *testing.T) {
	tr := New("t")
	old10 := tr.Start(0, 10)
	old11 := tr.Start(0, 11)
	tr.Done(old10)
	// Rebalance: the reader starts over at the committed offset 10.
	new10 := tr.Start(0, 10)
	tr.Done(old11) // old epoch: ignored
	if got := offsets(tr.Committable()); got[0] != 10 {
		t.Fatalf("committable = %v, want 0 at 10 (done before the refetch)", got)
	}
	new11 := tr.Start(0, 11)
	tr.Done(new11)
	if got := offsets(tr.Committable()); got[0] != 10 {
		t.Fatalf("committable = %v, want still 10 (11 waits for the new 10)", got)
	}
	tr.Done(new10)
	if got := offsets(tr.Committable()); got[0] != 11 {
		t.Fatalf("committable = %v, want 11", got)
	}
}
