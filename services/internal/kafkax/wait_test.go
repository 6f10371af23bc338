package kafkax_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// WAKEPUSH_KAFKA_CREATE_TOPICS defaults to true and parses false.
func TestCreateTopicsSetting(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want bool
	}{{"", true}, {"true", true}, {"false", false}} {
		t.Setenv("WAKEPUSH_KAFKA_CREATE_TOPICS", tt.env)
		var c kafkax.Config
		s := config.New("test")
		c.Register(s)
		if err := s.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if *c.CreateTopics != tt.want {
			t.Errorf("WAKEPUSH_KAFKA_CREATE_TOPICS=%q: CreateTopics %v, want %v", tt.env, *c.CreateTopics, tt.want)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A service with CreateTopics=false creates nothing: EnsureTopics waits, logging what is
// missing, until the topics exist with the configured partition count (here: once
// MigrateTopics has run), then returns.
func TestEnsureTopicsWaitsWithoutCreateRights(t *testing.T) {
	broker := stacktest.Kafka(t)
	service := &kafkax.Config{Brokers: []string{broker}, Partitions: 3, ReplicationFactor: 1, CreateTopics: new(false)}
	var logs syncBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		done <- service.EnsureTopics(ctx, topics.Events, topics.Wakes)
	}()
	select {
	case err := <-done:
		t.Fatalf("EnsureTopics returned before the topics exist: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	client, err := service.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kafkax.CloseClient(client)
	if st, err := topics.Verify(t.Context(), client, service.Layout(), topics.All...); err != nil || st[0].Err == nil {
		t.Fatalf("a service without create rights created push.events: %v %v", st, err)
	}
	if !strings.Contains(logs.String(), "waiting for the Kafka topics") || !strings.Contains(logs.String(), "push.events does not exist") {
		t.Errorf("no log of the wait naming push.events:\n%s", logs.String())
	}

	migrator := &kafkax.Config{Brokers: []string{broker}, Partitions: 3, ReplicationFactor: 1}
	res, err := migrator.MigrateTopics(t.Context(), topics.MigrateOptions{})
	if err != nil || len(res.Changes) != len(topics.All) {
		t.Fatalf("MigrateTopics: %v, %v", res, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("EnsureTopics still waiting after the topics were created")
	}
}

// The wait is bounded by the context; the error names each topic that is missing or has another
// partition count, and says how to fix it.
func TestWaitTopicsError(t *testing.T) {
	broker := stacktest.Kafka(t)
	migrator := &kafkax.Config{Brokers: []string{broker}, Partitions: 2, ReplicationFactor: 1}
	if err := migrator.EnsureTopics(t.Context(), topics.Wakes); err != nil {
		t.Fatal(err)
	}
	service := &kafkax.Config{Brokers: []string{broker}, Partitions: 3, ReplicationFactor: 1, CreateTopics: new(false)}
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	err := service.WaitTopics(ctx, slog.New(slog.DiscardHandler), topics.Events, topics.Wakes)
	for _, want := range []string{"push.events does not exist", "push.wakes has 2 partitions, want 3", "wakepushctl migrate", "deadline exceeded"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v: want %q in it", err, want)
		}
	}
}
