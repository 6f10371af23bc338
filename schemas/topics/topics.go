// Package topics holds the Kafka topic specs of wakepush and applies them idempotently.
//
// Every topic is keyed by device_id and has the same partition count within a deployment, so one
// device's whole history lives in partition p of every topic (DESIGN §2): the instances that own
// partition p own those devices outright.
package topics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic names.
const (
	Events        = "push.events"
	Registrations = "push.registrations"
	Wakes         = "push.wakes"
	Deliveries    = "push.deliveries"
	Receipts      = "push.receipts"
	WakesDLQ      = "push.wakes.dlq"
	EventsDLQ     = "push.events.dlq"
)

// Spec describes one topic.
type Spec struct {
	Name string
	// Compacted topics keep the latest record per key forever (cleanup.policy=compact).
	Compacted bool
	// Retention for delete-policy topics; 0 means the broker default.
	Retention time.Duration
	// Doc says what the topic holds.
	Doc string
}

// All lists every topic wakepush uses.
var All = []Spec{
	{Name: Events, Retention: 7 * 24 * time.Hour, Doc: "accepted push events (XEP-0357 publishes, HTTP events)"},
	{Name: Registrations, Compacted: true, Doc: "latest state per registration (key device_id/registration_id); tombstones for expired unregistrations"},
	{Name: Wakes, Retention: 7 * 24 * time.Hour, Doc: "coalesced wakes, one per push to send"},
	{Name: Deliveries, Retention: 7 * 24 * time.Hour, Doc: "provider outcome of each delivery attempt"},
	{Name: Receipts, Retention: 7 * 24 * time.Hour, Doc: "device receipts of wakes"},
	{Name: WakesDLQ, Retention: 30 * 24 * time.Hour, Doc: "wakes whose delivery attempts are exhausted"},
	{Name: EventsDLQ, Retention: 30 * 24 * time.Hour, Doc: "event records the coalescer could not decode"},
}

// Lookup returns the spec of a topic by name.
func Lookup(name string) (Spec, bool) {
	for _, s := range All {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Config returns the topic-level configuration entries of s.
func (s Spec) Config() []kafka.ConfigEntry {
	if s.Compacted {
		return []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
	}
	cfg := []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "delete"}}
	if s.Retention > 0 {
		cfg = append(cfg, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(s.Retention.Milliseconds(), 10)})
	}
	return cfg
}

// DefaultMinInsyncReplicas is min.insync.replicas of topics created with a replication factor
// of at least 3, unless Layout.MinInsyncReplicas says otherwise: with acks=all, a write is then
// acknowledged only once it is on 2 replicas, and one broker can fail without losing it or
// stopping writes.
const DefaultMinInsyncReplicas = 2

// Layout is how a deployment creates every topic.
type Layout struct {
	// Partitions of every topic (they must all have the same count).
	Partitions int
	// ReplicationFactor of created topics.
	ReplicationFactor int
	// MinInsyncReplicas is min.insync.replicas of created topics. 0 means
	// DefaultMinInsyncReplicas when ReplicationFactor is at least 3, and the broker's default
	// (not set on the topic) below that.
	MinInsyncReplicas int
}

// Validate reports a layout that cannot be created.
func (l Layout) Validate() error {
	switch {
	case l.Partitions < 1:
		return fmt.Errorf("partitions must be >= 1, got %d", l.Partitions)
	case l.ReplicationFactor < 1:
		return fmt.Errorf("replication factor must be >= 1, got %d", l.ReplicationFactor)
	case l.MinInsyncReplicas < 0 || l.MinInsyncReplicas > l.ReplicationFactor:
		return fmt.Errorf("min.insync.replicas must be 0 (default) or 1…%d (the replication factor), got %d", l.ReplicationFactor, l.MinInsyncReplicas)
	}
	return nil
}

// EffectiveMinInsyncReplicas is the min.insync.replicas set on created topics, or 0 when it is
// left to the broker.
func (l Layout) EffectiveMinInsyncReplicas() int {
	switch {
	case l.MinInsyncReplicas > 0:
		return l.MinInsyncReplicas
	case l.ReplicationFactor >= 3:
		return DefaultMinInsyncReplicas
	}
	return 0
}

// TopicConfig is the CreateTopics entry of s in this layout.
func (l Layout) TopicConfig(s Spec) kafka.TopicConfig {
	entries := s.Config()
	if n := l.EffectiveMinInsyncReplicas(); n > 0 {
		entries = append(entries, kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(n)})
	}
	return kafka.TopicConfig{
		Topic:             s.Name,
		NumPartitions:     l.Partitions,
		ReplicationFactor: l.ReplicationFactor,
		ConfigEntries:     entries,
	}
}

// Ensure creates the given topics in layout l when they do not exist yet, and checks that
// existing ones have l.Partitions partitions: co-partitioning by device_id depends on it. The
// replication factor and min.insync.replicas apply only to topics it creates. It is safe to call
// from every instance at start.
func Ensure(ctx context.Context, client *kafka.Client, l Layout, specs ...Spec) error {
	if err := l.Validate(); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}
	partitions := l.Partitions
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		req.Topics = append(req.Topics, l.TopicConfig(s))
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, terr)
		}
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("read topic metadata: %w", err)
	}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		if len(t.Partitions) != partitions {
			return fmt.Errorf("topic %s has %d partitions, want %d: every wakepush topic must have the same count so devices stay co-partitioned", t.Name, len(t.Partitions), partitions)
		}
	}
	return nil
}
