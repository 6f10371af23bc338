package procs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestBroker walks the broker child through what the chaos faults do: start, freeze and thaw,
// SIGTERM and start again on the same data (a record written before is still there), SIGKILL,
// close (data removed).
func TestBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logPath := filepath.Join(t.TempDir(), "kafka.log")
	defer func() {
		if t.Failed() {
			l, _ := os.ReadFile(logPath)
			t.Logf("kafka.log:\n%s", l)
		}
	}()
	b, err := StartBroker(ctx, stacktest.Build(t, BrokerPackage), logPath, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Pid() <= 0 {
		t.Fatalf("pid %d", b.Pid())
	}
	c := &kafka.Client{Addr: kafka.TCP(b.Addr), Timeout: 10 * time.Second}
	if _, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: "t", NumPartitions: 1, ReplicationFactor: 1}}}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr), Topic: "t", RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	if err := b.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := b.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := b.End(false); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatalf("start again: %v", err)
	}
	conn, err := kafka.DialLeader(ctx, "tcp", b.Addr, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := conn.ReadMessage(1 << 20)
	conn.Close()
	if err != nil || string(m.Value) != "kept" {
		t.Fatalf("after the restart: %q, %v", m.Value, err)
	}
	if err := b.End(true); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	b.Close()
	if _, err := os.Stat(b.DataDir); !os.IsNotExist(err) {
		t.Fatalf("data directory left behind: %v", err)
	}
}
