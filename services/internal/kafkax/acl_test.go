package kafkax_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// The Kafka ACLs of docs/permissions.md, enforced by kfake (EnableACLs): each user can do what
// its service does with exactly the documented ACLs, and no more.
func TestDocumentedACLs(t *testing.T) {
	topicACL := func(name string, ops ...string) []kafkabroker.ACL {
		var out []kafkabroker.ACL
		for _, op := range ops {
			out = append(out, kafkabroker.ACL{Resource: "topic", Name: name, Operation: op})
		}
		return out
	}
	concat := func(lists ...[]kafkabroker.ACL) []kafkabroker.ACL {
		var out []kafkabroker.ACL
		for _, l := range lists {
			out = append(out, l...)
		}
		return out
	}
	user := func(name string, acls ...[]kafkabroker.ACL) kafkabroker.ACLUser {
		return kafkabroker.ACLUser{SASLUser: kafkabroker.SASLUser{Mechanism: "SCRAM-SHA-512", User: name, Password: name + "-secret"}, ACLs: concat(acls...)}
	}
	b, err := kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0", ACLUsers: []kafkabroker.ACLUser{
		// wakepushctl migrate: every push.* topic, created and configured.
		user("wakepush-migrate", []kafkabroker.ACL{
			{Resource: "topic", Name: "push.", Prefixed: true, Operation: "Create"},
			{Resource: "topic", Name: "push.", Prefixed: true, Operation: "Alter"},
			{Resource: "topic", Name: "push.", Prefixed: true, Operation: "Describe"},
			{Resource: "topic", Name: "push.", Prefixed: true, Operation: "DescribeConfigs"},
			{Resource: "topic", Name: "push.", Prefixed: true, Operation: "AlterConfigs"},
		}),
		// wakepushctl check: read-only metadata.
		user("wakepush-check", []kafkabroker.ACL{{Resource: "topic", Name: "push.", Prefixed: true, Operation: "Describe"}}),
		// ingest: writes events, registrations and receipts, follows registrations without a group.
		user("wakepush-ingest",
			topicACL(topics.Events, "Describe", "Write"),
			topicACL(topics.Registrations, "Describe", "Write", "Read"),
			topicACL(topics.Receipts, "Describe", "Write")),
		// recorder: every topic through its consumer group.
		user("wakepush-recorder",
			[]kafkabroker.ACL{{Resource: "topic", Name: "push.", Prefixed: true, Operation: "Describe"},
				{Resource: "topic", Name: "push.", Prefixed: true, Operation: "Read"},
				{Resource: "group", Name: "wakepush-recorder", Operation: "Read"}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := func(name string) *kafkax.Config {
		return &kafkax.Config{Brokers: []string{b.Addr()}, SASLMechanism: "scram-sha-512", SASLUsername: name, SASLPassword: name + "-secret",
			Partitions: 2, ReplicationFactor: 1, BatchTimeout: 2 * time.Millisecond, BatchSize: 100, CreateTopics: new(false)}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Before migrate: check sees the topics are missing (Describe is enough to tell).
	checkClient, err := cfg("wakepush-check").Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kafkax.CloseClient(checkClient)
	st, err := topics.Verify(ctx, checkClient, cfg("wakepush-check").Layout(), topics.All...)
	if err != nil || st[0].Err == nil || !strings.Contains(st[0].Err.Error(), "does not exist") {
		t.Fatalf("check before migrate: %v %v", st, err)
	}

	// A service user cannot create topics.
	ingest := cfg("wakepush-ingest")
	ingest.CreateTopics = new(true)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	err = ingest.EnsureTopics(short, topics.Events)
	cancelShort()
	if err == nil {
		t.Fatal("wakepush-ingest created a topic without Create rights")
	}
	t.Logf("ingest creating topics: %v", err)

	// migrate: creates and configures everything; a second run changes nothing.
	res, err := cfg("wakepush-migrate").MigrateTopics(ctx, topics.MigrateOptions{})
	if err != nil || len(res.Changes) != len(topics.All) {
		t.Fatalf("migrate: %v %v", res, err)
	}
	if res, err = cfg("wakepush-migrate").MigrateTopics(ctx, topics.MigrateOptions{}); err != nil || len(res.Changes) != 0 {
		t.Fatalf("second migrate: %v %v", res, err)
	}
	// (a new client: kafka-go answers metadata requests from its transport's cache)
	checkClient2, err := cfg("wakepush-check").Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kafkax.CloseClient(checkClient2)
	st, err = topics.Verify(ctx, checkClient2, cfg("wakepush-check").Layout(), topics.All...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Err != nil {
			t.Errorf("check after migrate: %v", s.Err)
		}
	}

	// ingest: waits for its topics (Describe), writes (Write), follows registrations (Read).
	ingest = cfg("wakepush-ingest")
	if err := ingest.EnsureTopics(ctx, topics.Events, topics.Registrations, topics.Receipts); err != nil {
		t.Fatal(err)
	}
	p, err := kafkax.NewProducer(ingest)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := func(topic string) kafkax.Record {
		return kafkax.Record{Ctx: ctx, Topic: topic, Key: "dev1", Msg: &wakepushv1.PushEvent{Id: "e1", DeviceId: "dev1"}}
	}
	if err := p.Produce(ctx, rec(topics.Events), rec(topics.Registrations)); err != nil {
		t.Fatalf("ingest produce: %v", err)
	}
	// Not its topic: not even visible in its metadata (no Describe), so kafka-go reports it
	// unknown before asking the broker to write.
	if err := p.Produce(ctx, rec(topics.Wakes)); !errors.Is(err, kafka.TopicAuthorizationFailed) && !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Errorf("ingest writing push.wakes: %v, want it refused", err)
	}
	d, err := ingest.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	got := false
	for part := range 2 {
		r := kafka.NewReader(kafkax.PartitionReaderConfig(ingest.Brokers, d, topics.Registrations, part))
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := r.FetchMessage(rctx)
		rcancel()
		r.Close()
		if err == nil {
			got = true
			break
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ingest reading push.registrations partition %d: %v", part, err)
		}
	}
	if !got {
		t.Error("ingest read nothing from push.registrations")
	}

	// recorder: its consumer group over every topic, committing.
	recorder := cfg("wakepush-recorder")
	if err := recorder.EnsureTopics(ctx, topics.Events); err != nil {
		t.Fatal(err)
	}
	r, err := kafkax.NewReader(recorder, "wakepush-recorder", topics.Events, topics.Registrations)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 2 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("recorder fetch: %v", err)
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("recorder commit: %v", err)
		}
	}
}
