package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// groupPartitions is the partition count of the topic of the GroupReader tests.
const groupPartitions = 4

// groupWait bounds every wait for the group (joins, rebalances, records): generous, as the
// machine may be busy; the tests never assert how fast the group is.
const groupWait = 20 * time.Second

var allPartitions = []int{0, 1, 2, 3}

// groupFixture starts a broker with push.wakes in groupPartitions partitions and returns its
// configuration and the log the test's readers write to (shown when the test fails).
func groupFixture(t *testing.T) (*kafkax.Config, *syncBuffer) {
	t.Helper()
	cfg := &kafkax.Config{Brokers: []string{stacktest.Kafka(t)}, Partitions: groupPartitions, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Wakes); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("reader log:\n%s", logs.String())
		}
	})
	return cfg, logs
}

// assignment is a generation's partitions as OnAssign or OnRevoke saw them.
type assignment struct {
	gen   int32
	parts []int
}

// member is a GroupReader with what its callbacks were called with.
type member struct {
	*kafkax.GroupReader
	name string

	mu      sync.Mutex
	assigns []assignment
	revokes []assignment
}

func (m *member) lastAssign() (assignment, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.assigns) == 0 {
		return assignment{}, false
	}
	return m.assigns[len(m.assigns)-1], true
}

func (m *member) revoked() []assignment {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.revokes)
}

// join starts a member of group, closed when the test ends.
func join(t *testing.T, cfg *kafkax.Config, logs *syncBuffer, group, name string) *member {
	t.Helper()
	m := &member{name: name}
	r, err := kafkax.NewGroupReader(cfg, kafkax.GroupReaderOptions{
		Group:          group,
		Topic:          topics.Wakes,
		SessionTimeout: 6 * time.Second,
		OnAssign: func(gen int32, parts []int) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.assigns = append(m.assigns, assignment{gen, parts})
		},
		OnRevoke: func(gen int32, parts []int) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.revokes = append(m.revokes, assignment{gen, parts})
		},
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("member", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.GroupReader = r
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
	})
	return m
}

// eventually waits until cond holds, failing the test after groupWait.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(groupWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, groupWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAssigned waits until m's current generation has the partitions want.
func waitAssigned(t *testing.T, m *member, want []int) assignment {
	t.Helper()
	eventually(t, fmt.Sprintf("%s assigned %v", m.name, want), func() bool { return slices.Equal(m.Assigned(), want) })
	a, _ := m.lastAssign()
	if !slices.Equal(a.parts, want) {
		t.Fatalf("%s: Assigned() = %v but OnAssign last saw %v", m.name, want, a.parts)
	}
	return a
}

// waitSplit waits until the members are in one generation whose partitions they share out
// (each owning some, none twice, all owned) and returns their assignments.
func waitSplit(t *testing.T, ms ...*member) []assignment {
	t.Helper()
	var as []assignment
	eventually(t, "partitions split between the members", func() bool {
		as = as[:0]
		var union []int
		for _, m := range ms {
			a, ok := m.lastAssign()
			parts := m.Assigned()
			if !ok || len(parts) == 0 || !slices.Equal(parts, a.parts) || (len(as) > 0 && a.gen != as[0].gen) {
				return false
			}
			as = append(as, a)
			union = append(union, parts...)
		}
		slices.Sort(union)
		return slices.Equal(union, allPartitions)
	})
	return as
}

// produce writes perPartition records to every partition (keys "<partition>/<tag>/<i>") and
// returns them by key.
func produce(t *testing.T, cfg *kafkax.Config, tag string, perPartition int) map[string]bool {
	t.Helper()
	w := &kafka.Writer{
		Addr:  kafka.TCP(cfg.Brokers...),
		Topic: topics.Wakes,
		// The partition is the key's first field.
		Balancer: kafka.BalancerFunc(func(msg kafka.Message, _ ...int) int {
			p, _ := strconv.Atoi(strings.SplitN(string(msg.Key), "/", 2)[0])
			return p
		}),
		BatchTimeout: time.Millisecond,
		RequiredAcks: kafka.RequireAll,
	}
	defer w.Close()
	keys := map[string]bool{}
	var msgs []kafka.Message
	for p := range groupPartitions {
		for i := range perPartition {
			k := fmt.Sprintf("%d/%s/%d", p, tag, i)
			keys[k] = true
			msgs = append(msgs, kafka.Message{Key: []byte(k), Value: []byte("v")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return keys
}

// keyPartition is the partition a key of produce was written to.
func keyPartition(t *testing.T, key []byte) int {
	t.Helper()
	p, err := strconv.Atoi(strings.SplitN(string(key), "/", 2)[0])
	if err != nil {
		t.Fatalf("key %q: %v", key, err)
	}
	return p
}

// fetchN fetches n records from m.
func fetchN(t *testing.T, m *member, n int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	var msgs []kafka.Message
	for len(msgs) < n {
		msg, err := m.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("%s: fetched %d of %d records: %v", m.name, len(msgs), n, err)
		}
		if p := keyPartition(t, msg.Key); p != msg.Partition {
			t.Fatalf("%s: record %q from partition %d", m.name, msg.Key, msg.Partition)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// fetchNothing checks that m has no further record for a while.
func fetchNothing(t *testing.T, m *member, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if msg, err := m.FetchMessage(ctx); err == nil {
		t.Errorf("%s: unexpected record %q (partition %d, offset %d)", m.name, msg.Key, msg.Partition, msg.Offset)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: FetchMessage: %v, want a timeout", m.name, err)
	}
}

// sameKeys checks that msgs are the records keys, each once.
func sameKeys(t *testing.T, what string, msgs []kafka.Message, keys map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range msgs {
		seen[string(m.Key)]++
	}
	for k, n := range seen {
		if !keys[k] || n != 1 {
			t.Errorf("%s: record %q returned %d times, want %d", what, k, n, map[bool]int{true: 1}[keys[k]])
		}
	}
	for k := range keys {
		if seen[k] == 0 {
			t.Errorf("%s: record %q never returned", what, k)
		}
	}
}

// committed returns the group's committed offsets of every partition (-1: none).
func committed(t *testing.T, cfg *kafkax.Config, group string) map[int]int64 {
	t.Helper()
	client, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kafkax.CloseClient(client)
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topics.Wakes: allPartitions}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil {
		t.Fatal(res.Error)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topics.Wakes] {
		if p.Error != nil {
			t.Fatalf("partition %d: %v", p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// A lone member owns every partition, returns each record once, and a member that follows it
// after a commit and Close starts at the committed offsets.
func TestGroupReaderSingleMember(t *testing.T) {
	cfg, logs := groupFixture(t)
	const group = "single"
	a := join(t, cfg, logs, group, "a")
	first := waitAssigned(t, a, allPartitions)

	old := produce(t, cfg, "old", 10)
	msgs := fetchN(t, a, len(old))
	sameKeys(t, "first member", msgs, old)
	fetchNothing(t, a, time.Second)
	if err := a.CommitMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	want := map[int]int64{0: 10, 1: 10, 2: 10, 3: 10}
	if got := committed(t, cfg, group); !maps.Equal(got, want) {
		t.Errorf("committed offsets %v, want %v", got, want)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := a.revoked(); len(got) != 1 || got[0].gen != first.gen || !slices.Equal(got[0].parts, allPartitions) {
		t.Errorf("OnRevoke calls %v, want generation %d with %v", got, first.gen, allPartitions)
	}

	b := join(t, cfg, logs, group, "b")
	waitAssigned(t, b, allPartitions)
	fresh := produce(t, cfg, "new", 2)
	sameKeys(t, "next member", fetchN(t, b, len(fresh)), fresh)
	fetchNothing(t, b, time.Second)
}

// A second member takes half of the partitions: the first member's generation is revoked,
// and records produced afterwards come only out of the member that owns their partition.
func TestGroupReaderTwoMembersSplit(t *testing.T) {
	cfg, logs := groupFixture(t)
	const group = "split"
	a := join(t, cfg, logs, group, "a")
	first := waitAssigned(t, a, allPartitions)

	b := join(t, cfg, logs, group, "b")
	as := waitSplit(t, a, b)
	t.Logf("generation %d: a %v, b %v", as[0].gen, as[0].parts, as[1].parts)
	if as[0].gen == first.gen {
		t.Fatalf("the split is in the first generation (%d)", first.gen)
	}
	if got := a.revoked(); len(got) == 0 || got[0].gen != first.gen || !slices.Equal(got[0].parts, allPartitions) {
		t.Errorf("a's OnRevoke calls %v, want first generation %d with %v", got, first.gen, allPartitions)
	}

	keys := produce(t, cfg, "after", 5)
	ctx, cancel := context.WithTimeout(context.Background(), groupWait)
	defer cancel()
	var (
		mu  sync.Mutex
		got = map[*member][]kafka.Message{}
		all int
		wg  sync.WaitGroup
	)
	for _, m := range []*member{a, b} {
		wg.Go(func() {
			for {
				msg, err := m.FetchMessage(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				got[m] = append(got[m], msg)
				all++
				mu.Unlock()
			}
		})
	}
	eventually(t, "all records fetched", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return all >= len(keys)
	})
	time.Sleep(500 * time.Millisecond) // room for duplicates
	cancel()
	wg.Wait()

	var msgs []kafka.Message
	for i, m := range []*member{a, b} {
		for _, msg := range got[m] {
			if !slices.Contains(as[i].parts, msg.Partition) {
				t.Errorf("%s (partitions %v) returned record %q of partition %d", m.name, as[i].parts, msg.Key, msg.Partition)
			}
		}
		msgs = append(msgs, got[m]...)
	}
	sameKeys(t, "both members", msgs, keys)
}

// CommitMessages commits through the current generation the records of partitions it owns and
// skips the others without error, leaving their committed offsets alone.
func TestGroupReaderCommitSkipsRevokedPartitions(t *testing.T) {
	cfg, logs := groupFixture(t)
	const group = "commit"
	a := join(t, cfg, logs, group, "a")
	waitAssigned(t, a, allPartitions)
	produce(t, cfg, "r", 4)
	fetched := fetchN(t, a, 4*groupPartitions) // while a owns every partition; not committed

	b := join(t, cfg, logs, group, "b")
	as := waitSplit(t, a, b)
	owned, lost := as[0].parts, as[1].parts
	of := func(parts []int, offsets ...int64) []kafka.Message {
		var out []kafka.Message
		for _, m := range fetched {
			if slices.Contains(parts, m.Partition) && (offsets == nil || slices.Contains(offsets, m.Offset)) {
				out = append(out, m)
			}
		}
		return out
	}
	offsets := func(owned, lost int64) map[int]int64 {
		out := map[int]int64{}
		for _, p := range as[0].parts {
			out[p] = owned
		}
		for _, p := range as[1].parts {
			out[p] = lost
		}
		return out
	}
	foreign := kafka.Message{Topic: topics.Events, Partition: owned[0], Offset: 1}

	// In order, on the same group.
	for _, tt := range []struct {
		name    string
		msgs    []kafka.Message
		wantErr bool
		want    map[int]int64
	}{
		{"only revoked partitions", of(lost), false, offsets(-1, -1)},
		{"highest offset per partition", slices.Concat(of(owned, 2), of(owned, 0, 1)), false, offsets(3, -1)},
		{"owned and revoked partitions", fetched, false, offsets(4, -1)},
		{"record of another topic", []kafka.Message{foreign}, true, offsets(4, -1)},
		{"none", nil, false, offsets(4, -1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := a.CommitMessages(context.Background(), tt.msgs...)
			if (err != nil) != tt.wantErr {
				t.Errorf("CommitMessages: %v, want error %v", err, tt.wantErr)
			}
			if got := committed(t, cfg, group); !maps.Equal(got, tt.want) {
				t.Errorf("committed offsets %v, want %v (a owns %v)", got, tt.want, owned)
			}
		})
	}
}

// Close ends FetchMessage with io.EOF (also one that is waiting), leaves the group, and the
// remaining member takes every partition over.
func TestGroupReaderCloseHandsOver(t *testing.T) {
	cfg, logs := groupFixture(t)
	const group = "close"
	a := join(t, cfg, logs, group, "a")
	waitAssigned(t, a, allPartitions)
	b := join(t, cfg, logs, group, "b")
	as := waitSplit(t, a, b)

	waiting := make(chan error, 1)
	go func() {
		_, err := a.FetchMessage(context.Background())
		waiting <- err
	}()
	closed := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("a closed in %s", time.Since(closed).Round(time.Millisecond))
	select {
	case err := <-waiting:
		if !errors.Is(err, io.EOF) {
			t.Errorf("waiting FetchMessage: %v, want io.EOF", err)
		}
	case <-time.After(groupWait):
		t.Fatal("waiting FetchMessage did not return after Close")
	}
	if _, err := a.FetchMessage(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("FetchMessage after Close: %v, want io.EOF", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := a.Assigned(); got != nil {
		t.Errorf("Assigned after Close: %v", got)
	}
	if got := a.revoked(); len(got) == 0 || got[len(got)-1].gen != as[0].gen || !slices.Equal(got[len(got)-1].parts, as[0].parts) {
		t.Errorf("a's OnRevoke calls %v, want last generation %d with %v", got, as[0].gen, as[0].parts)
	}
	if err := a.CommitMessages(context.Background(), kafka.Message{Topic: topics.Wakes, Partition: as[0].parts[0], Offset: 0}); err != nil {
		t.Errorf("CommitMessages after Close: %v, want the record skipped", err)
	}

	waitAssigned(t, b, allPartitions)
	t.Logf("b owns every partition %s after a's Close", time.Since(closed).Round(time.Millisecond))
	keys := produce(t, cfg, "after", 2)
	sameKeys(t, "b", fetchN(t, b, len(keys)), keys)
}

// Rebalances are sticky: when a third member joins two, the two keep partitions they had and
// take none they did not (kafka-go's range balancer deals them out afresh).
func TestGroupReaderStickyRebalance(t *testing.T) {
	cfg, logs := groupFixture(t)
	const group = "sticky"
	a := join(t, cfg, logs, group, "a")
	waitAssigned(t, a, allPartitions)
	b := join(t, cfg, logs, group, "b")
	two := waitSplit(t, a, b)
	c := join(t, cfg, logs, group, "c")
	three := waitSplit(t, a, b, c)
	for i, m := range []*member{a, b} {
		if len(three[i].parts) == 0 {
			t.Fatalf("%s owns nothing after c joined", m.name)
		}
		for _, p := range three[i].parts {
			if !slices.Contains(two[i].parts, p) {
				t.Errorf("%s took partition %d (had %v, now %v): a rebalance moved a partition between old members", m.name, p, two[i].parts, three[i].parts)
			}
		}
	}
	t.Logf("a %v → %v, b %v → %v, c %v", two[0].parts, three[0].parts, two[1].parts, three[1].parts, three[2].parts)
}
