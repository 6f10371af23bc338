package main_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestRestartKeepsData: records written before a SIGTERM are served after a
// restart on the same -data-dir.
func TestRestartKeepsData(t *testing.T) {
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/deploy/local/cmd/kafka-broker")
	dataDir := filepath.Join(t.TempDir(), "kafka")
	addr := stacktest.FreeAddr(t)
	start := func() *stacktest.Process {
		p := stacktest.StartProcess(t, "kafka", bin, nil, "-addr", addr, "-data-dir", dataDir)
		p.WaitLine("kafka broker listening", 10*time.Second)
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	p := start()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: "wake", NumPartitions: 2, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors["wake"]; err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        "wake",
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		Balancer:     &kafka.Murmur2Balancer{},
	}
	if err := w.WriteMessages(ctx,
		kafka.Message{Key: []byte("a"), Value: []byte("1")},
		kafka.Message{Key: []byte("b"), Value: []byte("2")},
		kafka.Message{Key: []byte("c"), Value: []byte("3")},
	); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := p.Stop(); err != nil {
		t.Fatalf("kafka-broker exit after SIGTERM: %v", err)
	}
	p.WaitLine("kafka broker stopped", time.Second)

	start()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, Topic: "wake", GroupID: "g",
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond,
	})
	defer r.Close()
	got := map[string]string{}
	for len(got) < 3 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("after restart, read %d of 3 records: %v", len(got), err)
		}
		got[string(m.Key)] = string(m.Value)
	}
	if got["a"] != "1" || got["b"] != "2" || got["c"] != "3" {
		t.Fatalf("records after restart: %v", got)
	}
}
