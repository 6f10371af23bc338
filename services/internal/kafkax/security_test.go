package kafkax_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	"github.com/wakepush/wakepush/deploy/local/testcert"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

func startBroker(t *testing.T, opts kafkabroker.Options) *kafkabroker.Broker {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	b, err := kafkabroker.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// roundTrip creates push.events with cfg, produces one event through the wakepush producer and
// reads it back through a consumer-group reader, committing: the whole client path of a service.
func roundTrip(t *testing.T, cfg *kafkax.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cfg.EnsureTopics(ctx, topics.Events); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
	p, err := kafkax.NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ev := &wakepushv1.PushEvent{Id: records.NewID(), DeviceId: "0123456789abcdef0123456789abcdef", App: "im.example"}
	if err := p.Produce(ctx, kafkax.Record{Topic: topics.Events, Key: ev.DeviceId, Msg: ev}); err != nil {
		t.Fatalf("produce: %v", err)
	}
	r, err := kafkax.NewReader(cfg, "g-"+strings.ReplaceAll(t.Name(), "/", "-"), topics.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Subtests share brokers: skip the other subtests' events.
	for {
		msg, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume: %v", err)
		}
		got, err := records.Decode(kafkax.Header(&msg, records.HeaderSchema), msg.Value)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.CommitMessages(ctx, msg); err != nil {
			t.Fatalf("commit: %v", err)
		}
		if got.(*wakepushv1.PushEvent).Id == ev.Id {
			return
		}
	}
}

// Every supported transport security works end to end against a broker configured for it —
// producing, consuming in a group, committing and creating topics — and a wrong password, an
// untrusted certificate or a missing TLS layer is refused.
func TestTransportSecurity(t *testing.T) {
	ca := testcert.NewCA(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1").TLS}}
	users := []kafkabroker.SASLUser{
		{Mechanism: "PLAIN", User: "plain-user", Password: "plain-pw"},
		{Mechanism: "SCRAM-SHA-256", User: "scram256", Password: "pw-256"},
		{Mechanism: "SCRAM-SHA-512", User: "scram512", Password: "pw-512"},
	}
	tlsBroker := startBroker(t, kafkabroker.Options{TLS: serverTLS})
	saslTLSBroker := startBroker(t, kafkabroker.Options{TLS: serverTLS, SASL: users})
	saslBroker := startBroker(t, kafkabroker.Options{SASL: users})
	otherCA := testcert.NewCA(t)

	tests := []struct {
		name   string
		broker *kafkabroker.Broker
		cfg    kafkax.Config
		wantOK bool
		// wantErr is in the error of a refused client. kfake drops the connection after a
		// failed or missing SASL exchange (a real broker first answers
		// SASL_AUTHENTICATION_FAILED), so those clients read EOF.
		wantErr string
	}{
		{"tls", tlsBroker, kafkax.Config{TLS: true, CAFile: ca.CertFile}, true, ""},
		{"tls/other CA", tlsBroker, kafkax.Config{TLS: true, CAFile: otherCA.CertFile}, false, "x509"},
		{"tls/system roots", tlsBroker, kafkax.Config{TLS: true}, false, "x509"},
		{"tls/plaintext client", tlsBroker, kafkax.Config{}, false, "EOF"},
		{"sasl plain over tls", saslTLSBroker, kafkax.Config{TLS: true, CAFile: ca.CertFile, SASLMechanism: "plain", SASLUsername: "plain-user", SASLPassword: "plain-pw"}, true, ""},
		{"sasl plain over tls/wrong password", saslTLSBroker, kafkax.Config{TLS: true, CAFile: ca.CertFile, SASLMechanism: "plain", SASLUsername: "plain-user", SASLPassword: "wrong"}, false, "EOF"},
		{"scram-sha-256 over tls", saslTLSBroker, kafkax.Config{TLS: true, CAFile: ca.CertFile, SASLMechanism: "scram-sha-256", SASLUsername: "scram256", SASLPassword: "pw-256"}, true, ""},
		{"scram-sha-512 over tls", saslTLSBroker, kafkax.Config{TLS: true, CAFile: ca.CertFile, SASLMechanism: "SCRAM-SHA-512", SASLUsername: "scram512", SASLPassword: "pw-512"}, true, ""},
		{"scram-sha-256", saslBroker, kafkax.Config{SASLMechanism: "scram-sha-256", SASLUsername: "scram256", SASLPassword: "pw-256"}, true, ""},
		{"scram-sha-256/wrong password", saslBroker, kafkax.Config{SASLMechanism: "scram-sha-256", SASLUsername: "scram256", SASLPassword: "wrong"}, false, "EOF"},
		{"scram-sha-512", saslBroker, kafkax.Config{SASLMechanism: "scram-sha-512", SASLUsername: "scram512", SASLPassword: "pw-512"}, true, ""},
		{"scram-sha-512/wrong password", saslBroker, kafkax.Config{SASLMechanism: "scram-sha-512", SASLUsername: "scram512", SASLPassword: "wrong"}, false, "EOF"},
		{"scram-sha-512/unknown user", saslBroker, kafkax.Config{SASLMechanism: "scram-sha-512", SASLUsername: "nobody", SASLPassword: "pw-512"}, false, "EOF"},
		{"sasl broker/no sasl", saslBroker, kafkax.Config{}, false, "EOF"},
		{"sasl plain without tls, allowed", saslBroker, kafkax.Config{SASLMechanism: "plain", SASLUsername: "plain-user", SASLPassword: "plain-pw", SASLAllowPlaintext: true}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.Brokers = []string{tc.broker.Addr()}
			cfg.Partitions, cfg.ReplicationFactor, cfg.BatchTimeout, cfg.BatchSize = 1, 1, time.Millisecond, 10
			var chk config.Check
			cfg.Validate(&chk)
			if err := chk.Err(); err != nil {
				t.Fatalf("valid configuration refused: %v", err)
			}
			if tc.wantOK {
				roundTrip(t, &cfg)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := cfg.Ping(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("metadata request: %v, want an error containing %q", err, tc.wantErr)
			}
			short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
			defer cancelShort()
			err = cfg.EnsureTopics(short, topics.Events)
			if err == nil {
				t.Fatal("topics created")
			}
			// An untrusted certificate is final: EnsureTopics reports it instead of retrying.
			if tc.wantErr == "x509" && errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("EnsureTopics retried an untrusted certificate until its deadline: %v", err)
			}
		})
	}
}

// Validation refuses SASL PLAIN without TLS unless explicitly allowed, a CA file without TLS or
// without certificates, and a min.insync.replicas above the replication factor.
func TestValidateSecurity(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testcert.NewCA(t)
	base := kafkax.Config{Brokers: []string{"127.0.0.1:9092"}, Partitions: 1, ReplicationFactor: 1, BatchTimeout: time.Millisecond, BatchSize: 1}
	tests := []struct {
		name   string
		modify func(*kafkax.Config)
		want   string // "" = valid
	}{
		{"plaintext", func(c *kafkax.Config) {}, ""},
		{"plain without tls", func(c *kafkax.Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "plain", "u", "p" }, "WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT"},
		{"PLAIN without tls", func(c *kafkax.Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "PLAIN", "u", "p" }, "WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT"},
		{"plain without tls, allowed", func(c *kafkax.Config) {
			c.SASLMechanism, c.SASLUsername, c.SASLPassword, c.SASLAllowPlaintext = "plain", "u", "p", true
		}, ""},
		{"plain with tls", func(c *kafkax.Config) {
			c.SASLMechanism, c.SASLUsername, c.SASLPassword, c.TLS = "plain", "u", "p", true
		}, ""},
		{"scram without tls", func(c *kafkax.Config) { c.SASLMechanism, c.SASLUsername, c.SASLPassword = "scram-sha-512", "u", "p" }, ""},
		{"sasl without password", func(c *kafkax.Config) { c.SASLMechanism, c.SASLUsername, c.TLS = "scram-sha-256", "u", true }, "_PASSWORD are required"},
		{"unknown mechanism", func(c *kafkax.Config) { c.SASLMechanism = "gssapi" }, "want plain, scram-sha-256 or scram-sha-512"},
		{"ca file", func(c *kafkax.Config) { c.TLS, c.CAFile = true, ca.CertFile }, ""},
		{"ca file without tls", func(c *kafkax.Config) { c.CAFile = ca.CertFile }, "WAKEPUSH_KAFKA_TLS is not"},
		{"ca file missing", func(c *kafkax.Config) { c.TLS, c.CAFile = true, filepath.Join(dir, "missing.pem") }, "WAKEPUSH_KAFKA_CA_FILE"},
		{"ca file not pem", func(c *kafkax.Config) { c.TLS, c.CAFile = true, notPEM }, "no PEM certificates"},
		{"min insync 2 of 3", func(c *kafkax.Config) { c.ReplicationFactor, c.MinInsyncReplicas = 3, 2 }, ""},
		{"min insync above rf", func(c *kafkax.Config) { c.ReplicationFactor, c.MinInsyncReplicas = 3, 4 }, "WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS"},
		{"min insync negative", func(c *kafkax.Config) { c.MinInsyncReplicas = -1 }, "WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.modify(&cfg)
			var chk config.Check
			cfg.Validate(&chk)
			err := chk.Err()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// The settings read WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT and WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS.
func TestRegisterSecurity(t *testing.T) {
	t.Setenv("WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT", "true")
	t.Setenv("WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS", "3")
	var cfg kafkax.Config
	s := config.New("test")
	cfg.Register(s)
	if err := s.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !cfg.SASLAllowPlaintext || cfg.MinInsyncReplicas != 3 {
		t.Fatalf("allow plaintext %v, min insync %d", cfg.SASLAllowPlaintext, cfg.MinInsyncReplicas)
	}
}

// topicConfig reads one configuration entry of topic back from the broker.
func topicConfig(t *testing.T, cfg *kafkax.Config, topic, name string) kafka.DescribeConfigResponseConfigEntry {
	t.Helper()
	client, err := cfg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer kafkax.CloseClient(client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{name}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 || resp.Resources[0].Error != nil || len(resp.Resources[0].ConfigEntries) != 1 {
		t.Fatalf("describe %s of %s: %+v", name, topic, resp.Resources)
	}
	return resp.Resources[0].ConfigEntries[0]
}

// configSourceTopic is Kafka's DYNAMIC_TOPIC_CONFIG: the value was set on the topic.
const configSourceTopic = 1

// Topics created with replication factor 3 carry min.insync.replicas=2 (or the configured
// value); with replication factor 1 the topic leaves it to the broker.
func TestMinInsyncReplicas(t *testing.T) {
	tests := []struct {
		name       string
		brokers    int
		rf, minISR int
		want       string // "" = not set on the topic
	}{
		{"rf1", 1, 1, 0, ""},
		{"rf3 default", 3, 3, 0, "2"},
		{"rf3 configured 3", 3, 3, 3, "3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startBroker(t, kafkabroker.Options{Brokers: tc.brokers})
			cfg := &kafkax.Config{Brokers: b.Addrs(), Partitions: 2, ReplicationFactor: tc.rf, MinInsyncReplicas: tc.minISR}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cfg.EnsureTopics(ctx, topics.Events, topics.Registrations); err != nil {
				t.Fatal(err)
			}
			for _, topic := range []string{topics.Events, topics.Registrations} {
				e := topicConfig(t, cfg, topic, "min.insync.replicas")
				setOnTopic := e.ConfigSource == configSourceTopic
				switch {
				case tc.want == "" && setOnTopic:
					t.Errorf("%s: min.insync.replicas=%s set on the topic, want the broker default", topic, e.ConfigValue)
				case tc.want != "" && (!setOnTopic || e.ConfigValue != tc.want):
					t.Errorf("%s: min.insync.replicas=%s (source %d), want %s set on the topic", topic, e.ConfigValue, e.ConfigSource, tc.want)
				}
			}
			if got := topicConfig(t, cfg, topics.Registrations, "cleanup.policy").ConfigValue; got != "compact" {
				t.Errorf("%s cleanup.policy=%s, want compact", topics.Registrations, got)
			}
		})
	}
}
