package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	"github.com/wakepush/wakepush/deploy/local/prosody"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/internal/testenv"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// TestProsodyKafkaStopped stops the real broker (kfake) under the running ingest binary while a
// real Prosody publishes: every publish is answered wait/internal-server-error, which Prosody
// does not count against the registration; then a broker starts again on the same address with
// the same data directory (a broker restart), ingest's producer recovers by itself, the next
// publish is accepted and in Kafka, and every publish answered with a result is in Kafka.
func TestProsodyKafkaStopped(t *testing.T) {
	dataDir := t.TempDir()
	b, err := kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0", DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	brokers := []*kafkabroker.Broker{b}
	t.Cleanup(func() {
		for _, b := range brokers {
			b.Close()
		}
	})
	kcfg := &kafkax.Config{Brokers: []string{addr}, Partitions: testenv.Partitions, ReplicationFactor: 1, BatchTimeout: time.Millisecond}
	ensure := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		testenv.Must(t, kcfg.EnsureTopics(ctx, topics.Events, topics.Registrations, topics.Receipts), "create topics")
	}
	ensure()

	srv := prosody.Start(t, prosody.Options{})
	srv.CreateUser("alice", "alice-pw")
	srv.CreateUser("bob", "bob-pw")
	p, _, adminAddr := startIngestAdmin(t, kcfg, srv, "WAKEPUSH_INGEST_PRODUCE_TIMEOUT=2s", "WAKEPUSH_LOG_LEVEL=debug")

	reg := testenv.Keys(t).Register(testenv.IOSApp, "apns", testenv.APNsToken)
	alice := srv.Login(t, "alice", "alice-pw")
	alice.EnablePush(srv.ComponentJID, reg.Node, reg.Secret)
	alice.Close()
	bob := srv.Login(t, "bob", "bob-pw")
	const sent = "Sending important push notification for alice@"
	const waitAnswer = "Got error <wait:internal-server-error:the event store is unavailable, retry later>"

	// Kafka up: the publish is accepted.
	bob.Message(srv.JID("alice"), "before the broker stops")
	srv.WaitLogCount(sent, 1, 15*time.Second)
	if n := len(eventsOf(t, kcfg, reg.DeviceID, 15*time.Second)); n != 1 {
		t.Fatalf("%d events before the stop, want 1", n)
	}

	// The broker stops: wait answers, not counted by Prosody; /readyz says Kafka is down.
	b.Close()
	for i := 1; i <= 2; i++ {
		bob.Message(srv.JID("alice"), "while the broker is stopped")
		srv.WaitLogCount(waitAnswer, i, 20*time.Second)
	}
	if strings.Contains(srv.Log(), "error count for this identifier is now at") {
		t.Fatal("Prosody counted a wait answer against the registration")
	}
	if resp, err := http.Get("http://" + adminAddr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz while the broker is stopped: %d, want 503", resp.StatusCode)
		}
	}

	// A broker on the same address and data directory: topics and records are back, and ingest
	// reconnects without a restart (its readiness check sees Kafka again).
	b, err = kafkabroker.Start(kafkabroker.Options{Addr: addr, DataDir: dataDir})
	if err != nil {
		t.Fatalf("restart the broker on %s: %v", addr, err)
	}
	brokers = append(brokers, b)
	ensure() // idempotent: the topics survived in the data directory
	p.WaitHTTP("http://"+adminAddr+"/readyz", 30*time.Second)

	bob.Message(srv.JID("alice"), "after the broker is back")
	srv.WaitLogCount(sent, 4, 15*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for len(eventsOf(t, kcfg, reg.DeviceID, time.Second)) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	evs := eventsOf(t, kcfg, reg.DeviceID, time.Second)
	waits := strings.Count(srv.Log(), waitAnswer)
	if waits != 2 {
		t.Fatalf("Prosody got %d wait answers, want 2 (the publish after the restart must be accepted)", waits)
	}
	// 4 publishes, 2 answered wait: the 2 answered with a result are in Kafka (the one from
	// before the stop survived the restart), and nothing answered wait was recorded.
	if len(evs) != 2 {
		t.Fatalf("%d events for the device, want 2 (4 publishes, 2 wait answers)", len(evs))
	}
	if strings.Contains(srv.Log(), "error count for this identifier is now at") {
		t.Fatal("Prosody counted an error against the registration")
	}
}
