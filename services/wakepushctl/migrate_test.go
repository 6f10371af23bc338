package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/schemas/topics"
)

// infraFixture is a fresh kfake broker and a fresh ClickHouse database, with
// WAKEPUSH_CLICKHOUSE_DSN pointing at it (the DSN is a secret: environment only), and the flags
// that point migrate and check at the broker with 3 partitions per topic.
func infraFixture(t *testing.T) (broker string, flags []string) {
	t.Helper()
	broker = stacktest.Kafka(t)
	srv, db := stacktest.ClickHouseDatabase(t)
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", srv.DSN(db))
	return broker, []string{"-kafka-brokers", broker, "-kafka-partitions", "3", "-timeout", "60s"}
}

func runCmd(t *testing.T, fn func(context.Context, *bytes.Buffer, []string) error, args []string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := fn(t.Context(), &out, args)
	t.Logf("%v → err %v\n%s", args, err, out.String())
	return out.String(), err
}

func migrateCmd(ctx context.Context, w *bytes.Buffer, args []string) error {
	return migrateTo(ctx, w, args)
}
func checkCmd(ctx context.Context, w *bytes.Buffer, args []string) error {
	return checkTo(ctx, w, args)
}

// On a fresh broker and database check fails naming every topic and the schema; migrate creates
// every topic and applies every migration; a second migrate changes nothing; check then passes,
// one "ok" line per check.
func TestMigrateThenCheck(t *testing.T) {
	_, flags := infraFixture(t)

	out, err := runCmd(t, checkCmd, flags)
	if err == nil {
		t.Fatal("check passed before migrate")
	}
	for _, want := range []string{
		"FAIL  kafka topic push.events: does not exist",
		"FAIL  kafka topic push.registrations: does not exist",
		"FAIL  clickhouse schema ", "not migrated: no ",
		"ok    clickhouse ping ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check before migrate: no %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(err.Error(), "kafka topic push.wakes") {
		t.Errorf("check error %q does not name push.wakes", err)
	}

	out, err = runCmd(t, migrateCmd, flags)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := chschema.Migrations()
	for _, s := range topics.All {
		if !regexp.MustCompile(`(?m)^kafka: ` + regexp.QuoteMeta(s.Name) + `: create 3 partitions, replication factor 1, cleanup.policy=`).MatchString(out) {
			t.Errorf("first migrate: no creation of %s in:\n%s", s.Name, out)
		}
	}
	for _, m := range all {
		if !strings.Contains(out, ": applied "+m.String()+"\n") {
			t.Errorf("first migrate: %s not applied in:\n%s", m, out)
		}
	}
	if !strings.Contains(out, "kafka: 7 topics as specified (3 partitions each), 7 changed") {
		t.Errorf("first migrate: no summary in:\n%s", out)
	}

	out, err = runCmd(t, migrateCmd, flags)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "nothing to change") || strings.Contains(out, "create") || strings.Contains(out, "applied 0") {
		t.Errorf("second migrate changed something:\n%s", out)
	}

	out, err = runCmd(t, checkCmd, flags)
	if err != nil {
		t.Fatalf("check after migrate: %v", err)
	}
	tables, _ := chschema.Tables()
	if n := strings.Count(out, "\nok    ") + 1; n != len(topics.All)+2+len(tables) || strings.Contains(out, "FAIL") {
		t.Errorf("check after migrate: want %d ok lines, got:\n%s", len(topics.All)+2+len(tables), out)
	}
	if !strings.Contains(out, "ok    kafka topic push.events: 3 partitions") || !strings.Contains(out, "ok    clickhouse select ") {
		t.Errorf("check after migrate:\n%s", out)
	}

	// check compares with the configured count, like the services do at start.
	out, err = runCmd(t, checkCmd, append(flags, "-kafka-partitions", "4", "-kafka-only"))
	if err == nil || !strings.Contains(out, "FAIL  kafka topic push.events: has 3 partitions, want 4") || strings.Contains(out, "clickhouse") {
		t.Errorf("check with 4 partitions configured: err %v\n%s", err, out)
	}
}

// migrate on topics that exist already: configuration entries that differ are set (and
// reported), partitions are added only with -add-partitions, never removed.
func TestMigrateExistingTopics(t *testing.T) {
	tests := []struct {
		name       string
		partitions int               // of push.events before migrate
		config     map[string]string // of push.events before migrate
		flags      []string
		wantErr    string
		wantLines  []string
	}{
		{name: "retention changed", partitions: 3, config: map[string]string{"retention.ms": "1000"},
			wantLines: []string{"kafka: push.events: set config retention.ms=604800000 (was 1000)"}},
		{name: "fewer partitions", partitions: 2, wantErr: "partition count: topic push.events has 2 partitions, fewer than the configured 3"},
		{name: "fewer partitions, added", partitions: 2, flags: []string{"-add-partitions"},
			wantLines: []string{"kafka: push.events: add partitions 2 → 3"}},
		{name: "more partitions", partitions: 5, flags: []string{"-add-partitions"},
			wantErr: "partition count: topic push.events has 5 partitions, more than the configured 3: partitions cannot be removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			broker, flags := infraFixture(t)
			client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second}
			var entries []kafka.ConfigEntry
			for k, v := range tt.config {
				entries = append(entries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
			}
			resp, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
				Topic: topics.Events, NumPartitions: tt.partitions, ReplicationFactor: 1, ConfigEntries: entries}}})
			if err != nil || resp.Errors[topics.Events] != nil {
				t.Fatal(err, resp.Errors)
			}
			out, err := runCmd(t, migrateCmd, append(append(flags, "-kafka-only"), tt.flags...))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.wantLines {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("no %q in:\n%s", want, out)
				}
			}
			if strings.Contains(out, "push.events: create") || strings.Contains(out, "clickhouse") {
				t.Errorf("unexpected output:\n%s", out)
			}
			out, err = runCmd(t, migrateCmd, append(append(flags, "-kafka-only"), tt.flags...))
			if err != nil || !strings.Contains(out, "nothing to change") {
				t.Errorf("second migrate: %v\n%s", err, out)
			}
		})
	}
}

// A migrate started before the broker and ClickHouse answer waits for them, bounded by -timeout;
// the error says what it could not reach.
func TestMigrateTimeout(t *testing.T) {
	t.Setenv("WAKEPUSH_CLICKHOUSE_DSN", "clickhouse://"+stacktest.FreeAddr(t)+"/wakepush")
	start := time.Now()
	_, err := runCmd(t, migrateCmd, []string{"-kafka-brokers", stacktest.FreeAddr(t), "-timeout", "1500ms"})
	if err == nil || !strings.Contains(err.Error(), "migrate: Kafka 127.0.0.1:") || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d < time.Second || d > 20*time.Second {
		t.Errorf("gave up after %v, want about 1.5 s", d)
	}
	_, err = runCmd(t, migrateCmd, []string{"-clickhouse-only", "-timeout", "1s"})
	if err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Fatalf("clickhouse-only err %v", err)
	}
	_, err = runCmd(t, migrateCmd, []string{"-clickhouse-only", "-kafka-only"})
	if err == nil || !strings.Contains(err.Error(), "exclude each other") {
		t.Fatalf("both -only flags: err %v", err)
	}
}

// The Helm flow with services that have no DDL rights: the recorder started with
// WAKEPUSH_KAFKA_CREATE_TOPICS=false and WAKEPUSH_CLICKHOUSE_MIGRATE=false creates nothing and
// is not ready, saying what it waits for; once wakepushctl migrate has run it becomes ready.
func TestServiceWaitsForMigrate(t *testing.T) {
	broker, flags := infraFixture(t)
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/recorder")
	admin := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, "recorder", bin, []string{
		"WAKEPUSH_ADMIN_ADDR=" + admin,
		"WAKEPUSH_KAFKA_BROKERS=" + broker,
		"WAKEPUSH_KAFKA_PARTITIONS=3",
		"WAKEPUSH_KAFKA_CREATE_TOPICS=false",
		"WAKEPUSH_CLICKHOUSE_MIGRATE=false",
		"WAKEPUSH_LOG_FORMAT=text",
	})
	p.WaitLine("waiting for the Kafka topics", 60*time.Second)
	if out, err := runCmd(t, checkCmd, flags); err == nil {
		t.Fatalf("the recorder without DDL rights created something: check passes:\n%s", out)
	}
	if _, err := runCmd(t, migrateCmd, flags); err != nil {
		t.Fatal(err)
	}
	p.WaitHTTP("http://"+admin+"/readyz", 60*time.Second)
	if !strings.Contains(p.Output(), "ClickHouse schema at the latest version") {
		t.Errorf("recorder log does not say it found the schema:\n%s", p.Output())
	}
}
