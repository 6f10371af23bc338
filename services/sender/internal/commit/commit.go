// Package commit decides which offsets of a consumed topic may be committed when records are
// processed concurrently and finish out of order: per partition, only up to the highest offset
// below which every fetched record is done (its outcome durably recorded).
package commit

import (
	"slices"
	"sync"

	"github.com/segmentio/kafka-go"
)

// Tracker tracks fetched and finished offsets per partition of one topic.
type Tracker struct {
	topic string

	mu    sync.Mutex
	parts map[int]*partition
}

type partition struct {
	epoch   int
	pending []entry // fetched and not yet contiguous-done, in offset order
	maxSeen int64
	done    int64 // next offset after the contiguous done prefix; -1 when nothing is done
	commit  int64 // what was last committed (next offset); -1 when nothing was
}

type entry struct {
	offset int64
	done   bool
}

// Token identifies one fetched record for Done.
type Token struct {
	partition int
	offset    int64
	epoch     int
}

// New returns a tracker for topic.
func New(topic string) *Tracker {
	return &Tracker{topic: topic, parts: map[int]*partition{}}
}

// Start registers a fetched record. Records of a partition arrive in offset order; an offset at
// or below one already seen means the reader started over from the committed offset (after a
// rebalance), so the partition's earlier pending records no longer hold commits back: they are
// fetched again and will finish in the new epoch.
func (t *Tracker) Start(part int, offset int64) Token {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[part]
	if p == nil {
		p = &partition{maxSeen: -1, done: -1, commit: -1}
		t.parts[part] = p
	}
	if offset <= p.maxSeen {
		p.epoch++
		p.pending = p.pending[:0]
	}
	p.maxSeen = offset
	p.pending = append(p.pending, entry{offset: offset})
	return Token{partition: part, offset: offset, epoch: p.epoch}
}

// Done marks a record finished. Finishing a record of an earlier epoch changes nothing.
func (t *Tracker) Done(tok Token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[tok.partition]
	if p == nil || p.epoch != tok.epoch {
		return
	}
	i, found := slices.BinarySearchFunc(p.pending, tok.offset, func(e entry, o int64) int {
		switch {
		case e.offset < o:
			return -1
		case e.offset > o:
			return 1
		}
		return 0
	})
	if !found {
		return
	}
	p.pending[i].done = true
	n := 0
	for n < len(p.pending) && p.pending[n].done {
		p.done = max(p.done, p.pending[n].offset+1)
		n++
	}
	p.pending = p.pending[n:]
}

// Committable returns, per partition whose done offset moved past the last commit, the message
// to pass to kafka-go's CommitMessages (which commits Offset+1).
func (t *Tracker) Committable() []kafka.Message {
	t.mu.Lock()
	defer t.mu.Unlock()
	var msgs []kafka.Message
	for part, p := range t.parts {
		if p.done > p.commit {
			msgs = append(msgs, kafka.Message{Topic: t.topic, Partition: part, Offset: p.done - 1})
		}
	}
	return msgs
}

// Committed records that msgs (from Committable) were committed.
func (t *Tracker) Committed(msgs []kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		if p := t.parts[m.Partition]; p != nil {
			p.commit = max(p.commit, m.Offset+1)
		}
	}
}

// Pending is the number of fetched records not yet covered by the done offsets.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.parts {
		n += len(p.pending)
	}
	return n
}
