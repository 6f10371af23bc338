package topics_test

import (
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/schemas/topics"
)

func configOf(tc kafka.TopicConfig) map[string]string {
	m := map[string]string{}
	for _, e := range tc.ConfigEntries {
		m[e.ConfigName] = e.ConfigValue
	}
	return m
}

// min.insync.replicas is 2 from a replication factor of 3 on unless set, left to the broker
// below 3, and set as given otherwise; the spec's own entries stay.
func TestTopicConfig(t *testing.T) {
	wakes, _ := topics.Lookup(topics.Wakes)
	regs, _ := topics.Lookup(topics.Registrations)
	tests := []struct {
		name        string
		layout      topics.Layout
		spec        topics.Spec
		wantMinISR  string // "" = not set
		wantCleanup string
	}{
		{"rf1", topics.Layout{Partitions: 8, ReplicationFactor: 1}, wakes, "", "delete"},
		{"rf2", topics.Layout{Partitions: 8, ReplicationFactor: 2}, wakes, "", "delete"},
		{"rf3 default", topics.Layout{Partitions: 8, ReplicationFactor: 3}, wakes, "2", "delete"},
		{"rf3 compacted", topics.Layout{Partitions: 8, ReplicationFactor: 3}, regs, "2", "compact"},
		{"rf5 default", topics.Layout{Partitions: 8, ReplicationFactor: 5}, wakes, "2", "delete"},
		{"rf5 set to 3", topics.Layout{Partitions: 8, ReplicationFactor: 5, MinInsyncReplicas: 3}, wakes, "3", "delete"},
		{"rf2 set to 2", topics.Layout{Partitions: 8, ReplicationFactor: 2, MinInsyncReplicas: 2}, wakes, "2", "delete"},
		{"rf3 set to 1", topics.Layout{Partitions: 8, ReplicationFactor: 3, MinInsyncReplicas: 1}, wakes, "1", "delete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.layout.Validate(); err != nil {
				t.Fatal(err)
			}
			got := tc.layout.TopicConfig(tc.spec)
			if got.Topic != tc.spec.Name || got.NumPartitions != tc.layout.Partitions || got.ReplicationFactor != tc.layout.ReplicationFactor {
				t.Fatalf("topic config %+v", got)
			}
			cfg := configOf(got)
			if v, ok := cfg["min.insync.replicas"]; v != tc.wantMinISR || ok != (tc.wantMinISR != "") {
				t.Errorf("min.insync.replicas = %q (set %v), want %q", v, ok, tc.wantMinISR)
			}
			if cfg["cleanup.policy"] != tc.wantCleanup {
				t.Errorf("cleanup.policy = %q, want %q", cfg["cleanup.policy"], tc.wantCleanup)
			}
		})
	}
}

func TestLayoutValidate(t *testing.T) {
	tests := []struct {
		layout topics.Layout
		want   string
	}{
		{topics.Layout{Partitions: 0, ReplicationFactor: 1}, "partitions"},
		{topics.Layout{Partitions: 1, ReplicationFactor: 0}, "replication factor"},
		{topics.Layout{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: 4}, "min.insync.replicas"},
		{topics.Layout{Partitions: 1, ReplicationFactor: 3, MinInsyncReplicas: -1}, "min.insync.replicas"},
	}
	for _, tc := range tests {
		err := tc.layout.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %s", tc.layout, err, tc.want)
		}
	}
}
