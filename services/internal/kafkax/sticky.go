package kafkax

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"

	"github.com/segmentio/kafka-go"
)

// StickyProtocol is the name of the sticky assignment protocol GroupReader members offer first.
const StickyProtocol = "wakepush-sticky-v1"

// StickyBalancer is a kafka-go GroupBalancer that spreads partitions evenly over the members and
// keeps each member's partitions where the even spread allows: each member sends the partitions
// it owned in the last generation (UserData), and the leader lets every member keep up to its
// share of them before it hands out the rest. kafka-go's range and round-robin balancers deal
// partitions out afresh in the order the broker lists them, so a member joining or leaving, or a
// metadata hiccup that ends a generation, moves most partitions; for the sender every partition
// new to an instance means loading that partition's registrations. With this balancer a new
// member takes only its share, and an unchanged group keeps its assignment.
//
// Members that do not offer the protocol (an older version of the service during a rolling
// upgrade) make the group fall back to the range balancer, which GroupReader (and the
// coalescer) offer second. The zero value is ready to use.
type StickyBalancer struct {
	mu    sync.Mutex
	owned map[string][]int // topic -> partitions this member owned in its last generation
}

// SetOwned records this member's partitions of topic in the generation that just started, for
// its next join. A ConsumerGroup member using the balancer calls it for every generation.
func (b *StickyBalancer) SetOwned(topic string, partitions []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.owned == nil {
		b.owned = map[string][]int{}
	}
	b.owned[topic] = slices.Clone(partitions)
}

// stickyUserData is what a member tells the leader.
type stickyUserData struct {
	Owned map[string][]int `json:"owned"`
}

func (b *StickyBalancer) ProtocolName() string { return StickyProtocol }

func (b *StickyBalancer) UserData() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return json.Marshal(stickyUserData{Owned: b.owned})
}

// AssignGroups spreads each topic's partitions over the members consuming it: with n partitions
// and m members, n mod m members get ⌈n/m⌉ and the others ⌊n/m⌋ (those that owned the most get
// the larger shares); each member keeps as many of its previous partitions as its share allows
// (a partition two members claim goes to the first, by member id), and the partitions left over
// go, in order, to the members below their share.
func (b *StickyBalancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	byTopic := map[string][]int{}
	for _, p := range partitions {
		byTopic[p.Topic] = append(byTopic[p.Topic], p.ID)
	}
	previous := make(map[string]stickyUserData, len(members))
	for _, m := range members {
		var ud stickyUserData
		if json.Unmarshal(m.UserData, &ud) == nil {
			previous[m.ID] = ud
		}
		out[m.ID] = map[string][]int{}
	}
	for topic, parts := range byTopic {
		var ids []string
		for _, m := range members {
			if slices.Contains(m.Topics, topic) {
				ids = append(ids, m.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		for id, assigned := range assignSticky(ids, parts, func(id string) []int { return previous[id].Owned[topic] }) {
			if len(assigned) > 0 {
				out[id][topic] = assigned
			}
		}
	}
	return out
}

// assignSticky spreads parts over members (see AssignGroups); prev gives a member's previous
// partitions. Every partition goes to exactly one member.
func assignSticky(members []string, parts []int, prev func(string) []int) map[string][]int {
	members = slices.Clone(members)
	slices.Sort(members)
	parts = slices.Clone(parts)
	slices.Sort(parts)
	valid := make(map[int]bool, len(parts))
	for _, p := range parts {
		valid[p] = true
	}
	claimed := make(map[int]bool, len(parts))
	kept := make(map[string][]int, len(members))
	for _, m := range members {
		ps := slices.Clone(prev(m))
		slices.Sort(ps)
		for _, p := range ps {
			if valid[p] && !claimed[p] {
				claimed[p] = true
				kept[m] = append(kept[m], p)
			}
		}
	}
	// Shares: the members that owned the most get the larger ones.
	order := slices.Clone(members)
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(len(kept[b]), len(kept[a])) })
	share := make(map[string]int, len(members))
	for i, m := range order {
		share[m] = len(parts) / len(members)
		if i < len(parts)%len(members) {
			share[m]++
		}
	}
	out := make(map[string][]int, len(members))
	taken := make(map[int]bool, len(parts))
	for _, m := range members {
		k := kept[m][:min(len(kept[m]), share[m])]
		out[m] = slices.Clone(k)
		for _, p := range k {
			taken[p] = true
		}
	}
	i := 0
	for _, p := range parts {
		if taken[p] {
			continue
		}
		for len(out[members[i]]) >= share[members[i]] {
			i++
		}
		out[members[i]] = append(out[members[i]], p)
	}
	for _, m := range members {
		slices.Sort(out[m])
	}
	return out
}
