package kafkax

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestAssignSticky(t *testing.T) {
	parts := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	tests := []struct {
		name    string
		members []string
		parts   []int
		prev    map[string][]int
		want    map[string][]int
	}{
		{"first generation: even split", []string{"a", "b"}, parts(4), nil,
			map[string][]int{"a": {0, 1}, "b": {2, 3}}},
		{"a new member takes only its share", []string{"a", "b", "c"}, parts(12),
			map[string][]int{"a": {0, 2, 4, 6, 8, 10}, "b": {1, 3, 5, 7, 9, 11}},
			map[string][]int{"a": {0, 2, 4, 6}, "b": {1, 3, 5, 7}, "c": {8, 9, 10, 11}}},
		{"a member leaves: the others keep theirs", []string{"a", "c"}, parts(12),
			map[string][]int{"a": {0, 2, 4, 6}, "b": {1, 3, 5, 7}, "c": {8, 9, 10, 11}},
			map[string][]int{"a": {0, 1, 2, 3, 4, 6}, "c": {5, 7, 8, 9, 10, 11}}},
		{"unchanged group keeps everything", []string{"a", "b"}, parts(5),
			map[string][]int{"a": {1, 3, 4}, "b": {0, 2}},
			map[string][]int{"a": {1, 3, 4}, "b": {0, 2}}},
		{"a partition claimed twice goes to the first", []string{"a", "b"}, parts(4),
			map[string][]int{"a": {0, 1}, "b": {1, 2, 3}},
			map[string][]int{"a": {0, 1}, "b": {2, 3}}},
		{"partitions that no longer exist are dropped", []string{"a"}, parts(2),
			map[string][]int{"a": {0, 5, 9}},
			map[string][]int{"a": {0, 1}}},
		{"more members than partitions", []string{"a", "b", "c"}, parts(2),
			map[string][]int{"c": {1}},
			map[string][]int{"a": {0}, "b": nil, "c": {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := assignSticky(tt.members, tt.parts, func(m string) []int { return tt.prev[m] })
			for _, m := range tt.members {
				if !slices.Equal(got[m], tt.want[m]) {
					t.Errorf("member %s: %v, want %v (all: %v)", m, got[m], tt.want[m], got)
				}
			}
		})
	}
}

// Whatever the previous ownership claims, every partition goes to exactly one member and shares
// differ by at most one.
func TestAssignStickyProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n, m := rng.IntN(40), 1+rng.IntN(8)
		members := make([]string, m)
		prev := map[string][]int{}
		for i := range members {
			members[i] = fmt.Sprintf("m%02d", i)
			for range rng.IntN(10) {
				prev[members[i]] = append(prev[members[i]], rng.IntN(n+5))
			}
		}
		parts := make([]int, n)
		for i := range parts {
			parts[i] = i
		}
		got := assignSticky(members, parts, func(id string) []int { return prev[id] })
		seen := map[int]string{}
		lo, hi := n, 0
		for _, id := range members {
			lo, hi = min(lo, len(got[id])), max(hi, len(got[id]))
			for _, p := range got[id] {
				if other, dup := seen[p]; dup {
					t.Fatalf("partition %d to %s and %s", p, other, id)
				}
				seen[p] = id
			}
		}
		if len(seen) != n || hi-lo > 1 {
			t.Fatalf("%d partitions over %d members: %v", n, m, got)
		}
	}
}

// The leader reads the members' UserData; an unreadable one counts as owning nothing.
func TestStickyBalancerUserData(t *testing.T) {
	a, b := &StickyBalancer{}, &StickyBalancer{}
	a.SetOwned("t", []int{2, 3})
	b.SetOwned("t", []int{0, 1})
	ua, _ := a.UserData()
	ub, _ := b.UserData()
	var parts []kafka.Partition
	for i := range 6 {
		parts = append(parts, kafka.Partition{Topic: "t", ID: i})
	}
	got := a.AssignGroups([]kafka.GroupMember{
		{ID: "a", Topics: []string{"t"}, UserData: ua},
		{ID: "b", Topics: []string{"t"}, UserData: ub},
		{ID: "c", Topics: []string{"t"}, UserData: []byte("not json")},
	}, parts)
	want := kafka.GroupMemberAssignments{"a": {"t": {2, 3}}, "b": {"t": {0, 1}}, "c": {"t": {4, 5}}}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Fatalf("assignments %s, want %s", gj, wj)
	}
}
