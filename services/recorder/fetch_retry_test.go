package main

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// flakyReader fails its first fetches (Kafka unreachable), then hands out messages; io.EOF
// once closed.
type flakyReader struct {
	*fakeReader
	mu       sync.Mutex
	failures int
	closed   bool
}

func (f *flakyReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	f.mu.Lock()
	switch {
	case f.closed:
		f.mu.Unlock()
		return kafka.Message{}, io.EOF
	case f.failures > 0:
		f.failures--
		f.mu.Unlock()
		return kafka.Message{}, errors.New("failed to dial: connection refused")
	}
	f.mu.Unlock()
	return f.fakeReader.FetchMessage(ctx)
}

// TestFetchErrorsAreRetried: a broker restart (fetches failing for a while) must not stop the
// recorder; it keeps recording once Kafka is back. A closed reader still ends it.
func TestFetchErrorsAreRetried(t *testing.T) {
	t.Parallel()
	r, s := &flakyReader{fakeReader: newFakeReader(), failures: 4}, &fakeStore{}
	_, done := startRecorder(t, options{BatchRows: 1, FlushInterval: time.Hour}, r, s)
	r.msgs <- eventMsg(t, 0, 7)
	waitFor(t, "the record after the fetch errors", func() bool { return r.committed()[topicPartition{"push.events", 0}] == 7 })
	select {
	case err := <-done:
		t.Fatalf("the recorder stopped on a fetch error: %v", err)
	default:
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.msgs <- eventMsg(t, 0, 8) // wakes the fetch that is waiting; the next one sees the close
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("closed reader: %v, want io.EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a closed reader did not end the recorder")
	}
}
