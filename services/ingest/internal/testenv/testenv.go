// Package testenv holds the fixtures ingest's tests share: an apps file, keys, a controllable
// fake producer, and a real Kafka (kfake via stacktest) with ingest's topics and a reader.
package testenv

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/ingest/identity"
	"github.com/wakepush/wakepush/services/internal/apps"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// App ids of AppsYAML.
const (
	IOSApp     = "im.test.ios"
	AndroidApp = "org.test.android"
)

// AppsYAML is an apps file with one APNs and one FCM app.
const AppsYAML = `apps:
  - id: im.test.ios
    platform: apns
    apns: {team_id: TEAM000001, key_id: KEY0000001, key_file: /nonexistent/key.p8}
  - id: org.test.android
    platform: fcm
    fcm: {project_id: test-project}
`

// APNsToken is a valid APNs token.
const APNsToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"

// Env values of the test keys.
var (
	DeviceIDKey = base64.StdEncoding.EncodeToString([]byte("test device id key, 32 bytes ...."))
	NodeKeys    = "t1:" + base64.StdEncoding.EncodeToString([]byte("test node key t1, 32 bytes ....."))
)

// Apps returns AppsYAML parsed.
func Apps(t testing.TB) *apps.Set {
	t.Helper()
	a, err := apps.Parse([]byte(AppsYAML), "test")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// AppsFile writes AppsYAML to a temporary file and returns its path.
func AppsFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apps.yaml")
	if err := os.WriteFile(p, []byte(AppsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Keys returns the test keys.
func Keys(t testing.TB) *identity.Keys {
	t.Helper()
	k, err := identity.FromEnv("device", DeviceIDKey, "node", NodeKeys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Producer is a fake producer: it records what it is given and fails with Err (when set).
// When Gate is not nil, Produce waits for a value from it (or ctx) before answering.
type Producer struct {
	mu      sync.Mutex
	Err     error
	Gate    chan struct{}
	records []kafkax.Record
}

// Produce implements core.Producer.
func (p *Producer) Produce(ctx context.Context, recs ...kafkax.Record) error {
	p.mu.Lock()
	gate, perr := p.Gate, p.Err
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if perr != nil {
		return perr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.records = append(p.records, recs...)
	return nil
}

// SetErr makes later calls fail with err (nil: succeed).
func (p *Producer) SetErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Err = err
}

// SetGate sets Gate.
func (p *Producer) SetGate(g chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Gate = g
}

// Records returns what was produced.
func (p *Producer) Records() []kafkax.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]kafkax.Record(nil), p.records...)
}

// ErrKafkaDown is a produce error for tests.
var ErrKafkaDown = errors.New("kafka: all brokers unreachable")

// Partitions is the partition count of the test topics.
const Partitions = 3

// Kafka starts a broker for the test and creates ingest's topics; it returns the config to
// reach it.
func Kafka(t testing.TB) *kafkax.Config {
	t.Helper()
	cfg, _ := KafkaBroker(t)
	return cfg
}

// KafkaBroker is Kafka that also returns the broker (to stop it).
func KafkaBroker(t testing.TB) (*kafkax.Config, *kafkabroker.Broker) {
	t.Helper()
	b := stacktest.KafkaBroker(t)
	cfg := &kafkax.Config{
		Brokers:           []string{b.Addr()},
		Partitions:        Partitions,
		ReplicationFactor: 1,
		BatchTimeout:      time.Millisecond,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Events, topics.Registrations, topics.Receipts); err != nil {
		t.Fatal(err)
	}
	return cfg, b
}

// ReadAll reads every record of topic currently in Kafka (all partitions, from the start).
func ReadAll(t testing.TB, cfg *kafkax.Config, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	client, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	var reqs []kafka.OffsetRequest
	for p := 0; p < cfg.Partitions; p++ {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	var out []kafka.Message
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, po.Partition, po.Error)
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: po.Partition, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(po.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, po.Partition, err)
			}
			out = append(out, m)
			if m.Offset+1 >= po.LastOffset {
				break
			}
		}
		r.Close()
	}
	return out
}

// Find returns the decoded records of topic for which match returns true, polling until at
// least one exists or timeout.
func Find[M proto.Message](t testing.TB, cfg *kafkax.Config, topic string, timeout time.Duration, newMsg func() M, match func(M) bool) []M {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var found []M
		for _, m := range ReadAll(t, cfg, topic) {
			msg := newMsg()
			if err := proto.Unmarshal(m.Value, msg); err != nil {
				t.Fatalf("decode %s record: %v", topic, err)
			}
			if match(msg) {
				found = append(found, msg)
			}
		}
		if len(found) > 0 || time.Now().After(deadline) {
			return found
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Headers returns the headers of a message as a map (for assertions).
func Headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// Must fails the test on err.
func Must(t testing.TB, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
