package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
)

// fakeReader hands out queued messages and records commits.
type fakeReader struct {
	msgs chan kafka.Message

	mu      sync.Mutex
	fetches int
	commits []kafka.Message
}

func newFakeReader() *fakeReader { return &fakeReader{msgs: make(chan kafka.Message, 1000)} }

func (f *fakeReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	f.mu.Lock()
	f.fetches++
	f.mu.Unlock()
	select {
	case m := <-f.msgs:
		return m, nil
	case <-ctx.Done():
		return kafka.Message{}, ctx.Err()
	}
}

func (f *fakeReader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits = append(f.commits, msgs...)
	return nil
}

func (f *fakeReader) committed() map[topicPartition]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[topicPartition]int64{}
	for _, m := range f.commits {
		tp := topicPartition{m.Topic, m.Partition}
		out[tp] = max(out[tp], m.Offset)
	}
	return out
}

func (f *fakeReader) fetchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

type insertCall struct {
	table string
	token string
	rows  int
	ok    bool
}

// fakeStore records inserts; fail decides whether an attempt fails.
type fakeStore struct {
	mu    sync.Mutex
	calls []insertCall
	fail  func(table string) bool
}

func (s *fakeStore) Insert(_ context.Context, t table, token string, rows [][]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.fail == nil || !s.fail(t.name)
	s.calls = append(s.calls, insertCall{t.name, token, len(rows), ok})
	if !ok {
		return errors.New("clickhouse: connection refused")
	}
	return nil
}

func (s *fakeStore) snapshot() []insertCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]insertCall(nil), s.calls...)
}

func (s *fakeStore) setFail(f func(string) bool) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func recordMsg(t testing.TB, topic string, partition int, offset int64, rec proto.Message) kafka.Message {
	t.Helper()
	v, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: topic, Partition: partition, Offset: offset, Value: v, HighWaterMark: offset + 1,
		Headers: []kafka.Header{{Key: records.HeaderSchema, Value: []byte(records.SchemaName(rec))}}}
}

func eventMsg(t testing.TB, partition int, offset int64) kafka.Message {
	return recordMsg(t, "push.events", partition, offset, &wakepushv1.PushEvent{Id: "e", AcceptedAt: tsp(t0), DeviceId: "d"})
}

func drainCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

func startRecorder(t *testing.T, opts options, r fetcher, s inserter) (cancel func(), done <-chan error) {
	t.Helper()
	if opts.InsertTimeout == 0 {
		opts.InsertTimeout = time.Second
	}
	rec, err := newRecorder(opts, r, s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, c := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		ch <- rec.Run(ctx, drainCtx)
		close(finished)
	}()
	t.Cleanup(func() {
		c()
		<-finished
	})
	return c, ch
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFlushAtBatchRows(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{}
	startRecorder(t, options{BatchRows: 3, FlushInterval: time.Hour}, r, s)
	r.msgs <- eventMsg(t, 0, 10)
	r.msgs <- eventMsg(t, 1, 5)
	r.msgs <- recordMsg(t, "push.wakes", 0, 3, &wakepushv1.Wake{Id: "w"})
	waitFor(t, "a flush", func() bool { return len(r.committed()) == 3 })
	calls := s.snapshot()
	if len(calls) != 2 || calls[0] != (insertCall{"events", calls[0].token, 2, true}) || calls[1] != (insertCall{"wakes", calls[1].token, 1, true}) {
		t.Errorf("inserts = %+v, want events(2) then wakes(1)", calls)
	}
	want := map[topicPartition]int64{{"push.events", 0}: 10, {"push.events", 1}: 5, {"push.wakes", 0}: 3}
	for tp, off := range want {
		if got := r.committed()[tp]; got != off {
			t.Errorf("committed %v = %d, want %d", tp, got, off)
		}
	}
}

func TestFlushAtInterval(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{}
	startRecorder(t, options{BatchRows: 1000, FlushInterval: 50 * time.Millisecond}, r, s)
	start := time.Now()
	r.msgs <- eventMsg(t, 0, 0)
	waitFor(t, "the interval flush", func() bool { return len(r.committed()) == 1 })
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("flushed after %s, before the 50ms interval", d)
	}
}

func TestInsertFailureRetriesWithoutFetchingOrCommitting(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{}
	s.setFail(func(table string) bool { return table == "wakes" }) // events succeed, wakes fail
	startRecorder(t, options{BatchRows: 2, FlushInterval: time.Hour}, r, s)
	r.msgs <- eventMsg(t, 0, 0)
	r.msgs <- recordMsg(t, "push.wakes", 0, 0, &wakepushv1.Wake{Id: "w"})
	r.msgs <- eventMsg(t, 0, 1) // must not be fetched while the flush retries
	waitFor(t, "two failed attempts", func() bool {
		n := 0
		for _, c := range s.snapshot() {
			if !c.ok {
				n++
			}
		}
		return n >= 2
	})
	if got := r.fetchCount(); got != 2 {
		t.Errorf("fetched %d times while the flush was failing, want 2 (fetching must stop)", got)
	}
	if c := r.committed(); len(c) != 0 {
		t.Fatalf("committed %v before the insert succeeded", c)
	}
	s.setFail(nil)
	waitFor(t, "the commit after recovery", func() bool { return len(r.committed()) == 2 })
	var events, wakes []insertCall
	for _, c := range s.snapshot() {
		switch c.table {
		case "events":
			events = append(events, c)
		case "wakes":
			wakes = append(wakes, c)
		}
	}
	if len(events) != 1 {
		t.Errorf("events inserted %d times, want once (a succeeded table is not re-inserted)", len(events))
	}
	for _, c := range wakes[1:] {
		if c.token != wakes[0].token {
			t.Errorf("retry used token %s, first attempt %s: retries must reuse the token", c.token, wakes[0].token)
		}
	}
}

func TestPoisonRecordIsSkippedAsDeadLetter(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{}
	startRecorder(t, options{BatchRows: 3, FlushInterval: time.Hour}, r, s)
	bad := eventMsg(t, 0, 0)
	bad.Value = []byte{0xff, 0xff, 0xff}
	unknown := eventMsg(t, 0, 1)
	unknown.Headers = []kafka.Header{{Key: records.HeaderSchema, Value: []byte("wakepush.v9.Future")}}
	r.msgs <- bad
	r.msgs <- unknown
	r.msgs <- eventMsg(t, 0, 2)
	waitFor(t, "a flush", func() bool { return r.committed()[topicPartition{"push.events", 0}] == 2 })
	got := map[string]int{}
	for _, c := range s.snapshot() {
		got[c.table] += c.rows
	}
	if got["dead_letters"] != 2 || got["events"] != 1 {
		t.Errorf("rows per table = %v, want 2 dead_letters and 1 events", got)
	}
}

// A tombstone of push.registrations (an expired unregistration) is no record to project and no
// poison: no row anywhere; its offset is committed with the next flush.
func TestTombstoneIsSkipped(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{}
	startRecorder(t, options{BatchRows: 1, FlushInterval: time.Hour}, r, s)
	r.msgs <- kafka.Message{Topic: "push.registrations", Partition: 0, Offset: 4, Key: []byte("d/r"), HighWaterMark: 6}
	r.msgs <- recordMsg(t, "push.registrations", 0, 5, &wakepushv1.Registration{Id: "r", CreatedAt: tsp(t0), DeviceId: "d"})
	waitFor(t, "a flush", func() bool { return r.committed()[topicPartition{"push.registrations", 0}] == 5 })
	got := map[string]int{}
	for _, c := range s.snapshot() {
		got[c.table] += c.rows
	}
	if len(got) != 1 || got["registrations"] != 1 {
		t.Errorf("rows per table = %v, want 1 registrations row only", got)
	}
}

func TestDrainOnShutdown(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{}
	cancel, done := startRecorder(t, options{BatchRows: 1000, FlushInterval: time.Hour}, r, s)
	r.msgs <- eventMsg(t, 0, 7)
	waitFor(t, "the fetch", func() bool { return r.fetchCount() >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := r.committed()[topicPartition{"push.events", 0}]; got != 7 {
		t.Errorf("committed offset %d after drain, want 7", got)
	}
}

func TestDrainFailureDoesNotCommit(t *testing.T) {
	t.Parallel()
	r, s := newFakeReader(), &fakeStore{fail: func(string) bool { return true }}
	cancel, done := startRecorder(t, options{BatchRows: 1000, FlushInterval: time.Hour}, r, s)
	r.msgs <- eventMsg(t, 0, 7)
	waitFor(t, "the fetch", func() bool { return r.fetchCount() >= 2 })
	cancel()
	err := <-done
	if err == nil {
		t.Fatal("Run returned nil although the pending rows could not be written")
	}
	if c := r.committed(); len(c) != 0 {
		t.Errorf("committed %v without the rows in ClickHouse", c)
	}
}

func TestBatchToken(t *testing.T) {
	t.Parallel()
	mk := func(tb table, ranges map[topicPartition]offsetRange) string {
		return (&batch{table: tb, ranges: ranges}).token()
	}
	p0, p1 := topicPartition{"push.events", 0}, topicPartition{"push.events", 1}
	a := mk(eventsTable, map[topicPartition]offsetRange{p0: {1, 9, 100, 900}, p1: {4, 4, 400, 400}})
	for _, tc := range []struct {
		name   string
		token  string
		sameAs bool
	}{
		{"map order", mk(eventsTable, map[topicPartition]offsetRange{p1: {4, 4, 400, 400}, p0: {1, 9, 100, 900}}), true},
		{"other last offset", mk(eventsTable, map[topicPartition]offsetRange{p0: {1, 10, 100, 900}, p1: {4, 4, 400, 400}}), false},
		{"other table", mk(wakesTable, map[topicPartition]offsetRange{p0: {1, 9, 100, 900}, p1: {4, 4, 400, 400}}), false},
		// A recreated topic: the same offsets, records written at another time.
		{"same offsets, other records", mk(eventsTable, map[topicPartition]offsetRange{p0: {1, 9, 5100, 5900}, p1: {4, 4, 5400, 5400}}), false},
	} {
		if (tc.token == a) != tc.sameAs {
			t.Errorf("%s: token %s vs %s, want same=%v", tc.name, tc.token, a, tc.sameAs)
		}
	}
}
