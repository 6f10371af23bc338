package kafkax_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// MigrateTopics on a three-broker cluster whose topics were created by hand: it sets
// min.insync.replicas=2 where the topic has 3 replicas, refuses to set it (and says so) where the
// topic has a single one, and notes the replication factor it does not change. A second run
// changes nothing.
func TestMigrateTopicsReplication(t *testing.T) {
	b, err := kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0", Brokers: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Timeout: 10 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: topics.Events, NumPartitions: 2, ReplicationFactor: 3},
		{Topic: topics.Wakes, NumPartitions: 2, ReplicationFactor: 1},
	}})
	if err != nil || resp.Errors[topics.Events] != nil || resp.Errors[topics.Wakes] != nil {
		t.Fatal(err, resp.Errors)
	}
	cfg := &kafkax.Config{Brokers: b.Addrs(), Partitions: 2, ReplicationFactor: 3}
	res, err := cfg.MigrateTopics(ctx, topics.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("changes %v\nnotes %v", res.Changes, res.Notes)
	has := func(list []string, want string) bool {
		for _, s := range list {
			if strings.Contains(s, want) {
				return true
			}
		}
		return false
	}
	var changes []string
	for _, c := range res.Changes {
		changes = append(changes, c.String())
	}
	for _, want := range []string{
		"push.events: set config min.insync.replicas=2 (was ",
		"push.registrations: create 2 partitions, replication factor 3, cleanup.policy=compact, min.insync.replicas=2",
	} {
		if !has(changes, want) {
			t.Errorf("no change %q in %q", want, changes)
		}
	}
	if has(changes, "push.wakes: set config min.insync.replicas") {
		t.Errorf("min.insync.replicas=2 set on the single-replica push.wakes: %q", changes)
	}
	for _, want := range []string{
		"push.wakes: replication factor 1, configured 3",
		"push.wakes: min.insync.replicas=2 not set: the topic has only 1 replicas",
	} {
		if !has(res.Notes, want) {
			t.Errorf("no note %q in %q", want, res.Notes)
		}
	}
	res, err = cfg.MigrateTopics(ctx, topics.MigrateOptions{})
	if err != nil || len(res.Changes) != 0 {
		t.Errorf("second run: %v, %v", res.Changes, err)
	}
}
