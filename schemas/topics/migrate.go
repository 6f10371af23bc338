package topics

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/segmentio/kafka-go"
)

// Change is one change Migrate made to a topic.
type Change struct {
	Topic string
	// What: "create", "add partitions" or "set config".
	What string
	// Detail: the partitions, replication factor and configuration created, the partition
	// counts, or the configuration entry and its previous value.
	Detail string
}

func (c Change) String() string { return c.Topic + ": " + c.What + " " + c.Detail }

// ErrPartitions marks an existing topic whose partition count Migrate will not change: a
// configuration problem, not a transient one.
var ErrPartitions = errors.New("partition count")

// MigrateOptions adjusts Migrate.
type MigrateOptions struct {
	// AddPartitions raises the partition count of existing topics that have fewer than the
	// layout's. Without it such a topic is an error: records keep the partition they were
	// written to, so after adding partitions a device's earlier records sit in another
	// partition than its new ones (its coalescer and sender state restarts from the new one).
	AddPartitions bool
}

// Result is what Migrate did.
type Result struct {
	Changes []Change
	// Notes are differences Migrate does not change: a replication factor other than the
	// layout's (changing it is a partition reassignment, an operator's decision).
	Notes []string
}

// Migrate makes the given topics match layout l and their specs, idempotently: it creates the
// missing topics (l's partitions, replication factor and min.insync.replicas, the spec's
// configuration), sets every configuration entry of the spec (and min.insync.replicas when l
// sets one) that differs on an existing topic, and adds partitions to a topic that has fewer
// than l.Partitions when opts.AddPartitions allows it. It never removes partitions (Kafka
// cannot) and never deletes anything: a topic with more partitions than l.Partitions is an
// error. A second run changes nothing. It needs Create, Alter, AlterConfigs, DescribeConfigs
// and Describe on the topics (docs/permissions.md).
func Migrate(ctx context.Context, client *kafka.Client, l Layout, opts MigrateOptions, specs ...Spec) (Result, error) {
	var res Result
	if err := l.Validate(); err != nil {
		return res, fmt.Errorf("migrate topics: %w", err)
	}
	names := specNames(specs)
	existing, err := describe(ctx, client, names)
	if err != nil {
		return res, err
	}

	// 1. Create the missing topics.
	create := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		if _, ok := existing[s.Name]; !ok {
			create.Topics = append(create.Topics, l.TopicConfig(s))
		}
	}
	if len(create.Topics) > 0 {
		resp, err := client.CreateTopics(ctx, create)
		if err != nil {
			return res, fmt.Errorf("create topics: %w", err)
		}
		for _, tc := range create.Topics {
			terr := resp.Errors[tc.Topic]
			switch {
			case terr == nil:
				res.Changes = append(res.Changes, Change{Topic: tc.Topic, What: "create", Detail: describeCreated(tc)})
			case errors.Is(terr, kafka.TopicAlreadyExists): // created meanwhile by someone else: checked below
			default:
				return res, fmt.Errorf("create topic %s: %w", tc.Topic, terr)
			}
		}
		if existing, err = describe(ctx, client, names); err != nil {
			return res, err
		}
	}

	// 2. Partition counts (and the replication factor, only noted).
	var grow []kafka.TopicPartitionsConfig
	var errs []error
	for _, s := range specs {
		t, ok := existing[s.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("topic %s: not visible in the metadata after it was created", s.Name))
			continue
		}
		n := len(t.Partitions)
		switch {
		case n > l.Partitions:
			errs = append(errs, fmt.Errorf("%w: topic %s has %d partitions, more than the configured %d: partitions cannot be removed, and every wakepush topic must have the same count; set WAKEPUSH_KAFKA_PARTITIONS=%d", ErrPartitions, s.Name, n, l.Partitions, n))
		case n < l.Partitions && opts.AddPartitions:
			grow = append(grow, kafka.TopicPartitionsConfig{Name: s.Name, Count: int32(l.Partitions)})
		case n < l.Partitions:
			errs = append(errs, fmt.Errorf("%w: topic %s has %d partitions, fewer than the configured %d: adding partitions moves devices to other partitions, so it is done only when asked (wakepushctl migrate -add-partitions)", ErrPartitions, s.Name, n, l.Partitions))
		}
		if n > 0 && len(t.Partitions[0].Replicas) != l.ReplicationFactor {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: replication factor %d, configured %d (not changed: reassign its partitions to change it)", s.Name, len(t.Partitions[0].Replicas), l.ReplicationFactor))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if len(grow) > 0 {
		resp, err := client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: grow})
		if err != nil {
			return res, fmt.Errorf("add partitions: %w", err)
		}
		for _, g := range grow {
			if terr := resp.Errors[g.Name]; terr != nil {
				return res, fmt.Errorf("add partitions to %s: %w", g.Name, terr)
			}
			res.Changes = append(res.Changes, Change{Topic: g.Name, What: "add partitions", Detail: fmt.Sprintf("%d → %d", len(existing[g.Name].Partitions), g.Count)})
		}
	}

	// 3. Configuration entries that differ.
	want := map[string]map[string]string{}
	for _, s := range specs {
		want[s.Name] = map[string]string{}
		for _, e := range l.TopicConfig(s).ConfigEntries {
			want[s.Name][e.ConfigName] = e.ConfigValue
		}
		// min.insync.replicas above the topic's real replication factor would refuse every
		// acks=all write (NOT_ENOUGH_REPLICAS).
		if t, ok := existing[s.Name]; ok && len(t.Partitions) > 0 {
			if rf := len(t.Partitions[0].Replicas); rf > 0 && l.EffectiveMinInsyncReplicas() > rf {
				delete(want[s.Name], "min.insync.replicas")
				res.Notes = append(res.Notes, fmt.Sprintf("%s: min.insync.replicas=%d not set: the topic has only %d replicas, so every acks=all write would be refused", s.Name, l.EffectiveMinInsyncReplicas(), rf))
			}
		}
	}
	have, err := describeConfigs(ctx, client, want)
	if err != nil {
		return res, err
	}
	alter := &kafka.IncrementalAlterConfigsRequest{}
	var altered []Change
	for _, s := range specs {
		var configs []kafka.IncrementalAlterConfigsRequestConfig
		for _, name := range slices.Sorted(maps.Keys(want[s.Name])) {
			v := want[s.Name][name]
			old, ok := have[s.Name][name]
			if ok && old == v {
				continue
			}
			configs = append(configs, kafka.IncrementalAlterConfigsRequestConfig{Name: name, Value: v, ConfigOperation: kafka.ConfigOperationSet})
			if !ok {
				old = "unset"
			}
			altered = append(altered, Change{Topic: s.Name, What: "set config", Detail: fmt.Sprintf("%s=%s (was %s)", name, v, old)})
		}
		if len(configs) > 0 {
			alter.Resources = append(alter.Resources, kafka.IncrementalAlterConfigsRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, Configs: configs})
		}
	}
	if len(alter.Resources) > 0 {
		resp, err := client.IncrementalAlterConfigs(ctx, alter)
		if err != nil {
			return res, fmt.Errorf("alter topic configs: %w", err)
		}
		for _, r := range resp.Resources {
			if r.Error != nil {
				return res, fmt.Errorf("alter config of topic %s: %w", r.ResourceName, r.Error)
			}
		}
		res.Changes = append(res.Changes, altered...)
	}
	return res, nil
}

func describeCreated(tc kafka.TopicConfig) string {
	s := fmt.Sprintf("%d partitions, replication factor %d", tc.NumPartitions, tc.ReplicationFactor)
	for _, e := range tc.ConfigEntries {
		s += ", " + e.ConfigName + "=" + e.ConfigValue
	}
	return s
}

func specNames(specs []Spec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

// describe returns the metadata of the named topics that exist. Any error but "unknown topic"
// is returned.
func describe(ctx context.Context, client *kafka.Client, names []string) (map[string]kafka.Topic, error) {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("read topic metadata: %w", err)
	}
	out := map[string]kafka.Topic{}
	for _, t := range meta.Topics {
		switch {
		case t.Error == nil:
			out[t.Name] = t
		case errors.Is(t.Error, kafka.UnknownTopicOrPartition):
		default:
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
	}
	return out, nil
}

// describeConfigs reads the named configuration entries of each topic.
func describeConfigs(ctx context.Context, client *kafka.Client, want map[string]map[string]string) (map[string]map[string]string, error) {
	req := &kafka.DescribeConfigsRequest{}
	for _, topic := range slices.Sorted(maps.Keys(want)) {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: slices.Sorted(maps.Keys(want[topic])),
		})
	}
	resp, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	out := map[string]map[string]string{}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe config of topic %s: %w", r.ResourceName, r.Error)
		}
		m := map[string]string{}
		for _, e := range r.ConfigEntries {
			m[e.ConfigName] = e.ConfigValue
		}
		out[r.ResourceName] = m
	}
	return out, nil
}

// TopicStatus is what Verify found about one topic.
type TopicStatus struct {
	Name       string
	Partitions int // 0 when it does not exist
	// Err says what is wrong: it does not exist, or has another partition count than the
	// layout's. Nil: ready.
	Err error
}

// ErrNotReady marks a topic that does not exist or has the wrong partition count.
var ErrNotReady = errors.New("topic not ready")

// Verify reads the metadata of the given topics and reports, per topic, whether it exists with
// l.Partitions partitions — what Ensure requires and what the services need to start. It needs
// only Describe on the topics. The error is for the metadata request itself.
func Verify(ctx context.Context, client *kafka.Client, l Layout, specs ...Spec) ([]TopicStatus, error) {
	existing, err := describe(ctx, client, specNames(specs))
	if err != nil {
		return nil, err
	}
	out := make([]TopicStatus, len(specs))
	for i, s := range specs {
		st := TopicStatus{Name: s.Name}
		t, ok := existing[s.Name]
		switch {
		case !ok:
			st.Err = fmt.Errorf("%w: %s does not exist", ErrNotReady, s.Name)
		case len(t.Partitions) != l.Partitions:
			st.Partitions = len(t.Partitions)
			st.Err = fmt.Errorf("%w: %s has %d partitions, want %d", ErrNotReady, s.Name, len(t.Partitions), l.Partitions)
		default:
			st.Partitions = len(t.Partitions)
		}
		out[i] = st
	}
	return out, nil
}
