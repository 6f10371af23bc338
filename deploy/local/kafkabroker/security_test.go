package kafkabroker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
	"github.com/wakepush/wakepush/deploy/local/testcert"
)

// metadata asks the broker at addr for its metadata through a transport with tc and m.
func metadata(addr string, tc *tls.Config, m sasl.Mechanism) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr := &kafka.Transport{TLS: tc, SASL: m, DialTimeout: 2 * time.Second}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 5 * time.Second}
	_, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	return err
}

func scramMech(t *testing.T, algo scram.Algorithm, user, pass string) sasl.Mechanism {
	t.Helper()
	m, err := scram.Mechanism(algo, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A TLS broker answers clients that trust its CA and nobody else; a SASL broker answers only
// authenticated clients, for each mechanism; both combine.
func TestTLSAndSASL(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t)
	srvCert := ca.Server(t, "127.0.0.1")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}}
	trusting := &tls.Config{RootCAs: ca.Pool()}
	untrusting := &tls.Config{}
	users := []kafkabroker.SASLUser{
		{Mechanism: "PLAIN", User: "plain-user", Password: "plain-pw"},
		{Mechanism: "SCRAM-SHA-256", User: "scram256", Password: "pw-256"},
		{Mechanism: "SCRAM-SHA-512", User: "scram512", Password: "pw-512"},
	}
	start := func(t *testing.T, opts kafkabroker.Options) string {
		t.Helper()
		opts.Addr = "127.0.0.1:0"
		b, err := kafkabroker.Start(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b.Addr()
	}
	tlsAddr := start(t, kafkabroker.Options{TLS: serverTLS})
	saslAddr := start(t, kafkabroker.Options{SASL: users})
	bothAddr := start(t, kafkabroker.Options{TLS: serverTLS, SASL: users})

	tests := []struct {
		name   string
		addr   string
		tls    *tls.Config
		mech   sasl.Mechanism
		wantOK bool
	}{
		{"tls/trusted", tlsAddr, trusting, nil, true},
		{"tls/untrusted CA", tlsAddr, untrusting, nil, false},
		{"tls/plain client", tlsAddr, nil, nil, false},
		{"sasl/plain", saslAddr, nil, plain.Mechanism{Username: "plain-user", Password: "plain-pw"}, true},
		{"sasl/plain wrong password", saslAddr, nil, plain.Mechanism{Username: "plain-user", Password: "nope"}, false},
		{"sasl/scram-sha-256", saslAddr, nil, scramMech(t, scram.SHA256, "scram256", "pw-256"), true},
		{"sasl/scram-sha-256 wrong password", saslAddr, nil, scramMech(t, scram.SHA256, "scram256", "nope"), false},
		{"sasl/scram-sha-512", saslAddr, nil, scramMech(t, scram.SHA512, "scram512", "pw-512"), true},
		{"sasl/scram-sha-512 as a 256 user", saslAddr, nil, scramMech(t, scram.SHA512, "scram256", "pw-256"), false},
		{"sasl/none", saslAddr, nil, nil, false},
		{"tls+sasl/scram-sha-512", bothAddr, trusting, scramMech(t, scram.SHA512, "scram512", "pw-512"), true},
		{"tls+sasl/no tls", bothAddr, nil, scramMech(t, scram.SHA512, "scram512", "pw-512"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := metadata(tc.addr, tc.tls, tc.mech)
			if (err == nil) != tc.wantOK {
				t.Fatalf("metadata: %v, want ok=%v", err, tc.wantOK)
			}
		})
	}
}

func TestSecurityOptionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts kafkabroker.Options
		want string
	}{
		{"unknown mechanism", kafkabroker.Options{SASL: []kafkabroker.SASLUser{{Mechanism: "GSSAPI", User: "u", Password: "p"}}}, "GSSAPI"},
		{"no password", kafkabroker.Options{SASL: []kafkabroker.SASLUser{{Mechanism: "PLAIN", User: "u"}}}, "needs a name and a password"},
		{"brokers with a fixed port", kafkabroker.Options{Addr: "127.0.0.1:19999", Brokers: 3}, "need port 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := kafkabroker.Start(tc.opts)
			if err == nil {
				b.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Three brokers accept topics with replication factor 3 (and refuse 4).
func TestBrokers(t *testing.T) {
	t.Parallel()
	b, err := kafkabroker.Start(kafkabroker.Options{Brokers: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n := len(b.Addrs()); n != 3 {
		t.Fatalf("%d addresses, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(b.Addr()), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "rf3", NumPartitions: 2, ReplicationFactor: 3},
		{Topic: "rf4", NumPartitions: 2, ReplicationFactor: 4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors["rf3"]; err != nil {
		t.Errorf("rf3: %v", err)
	}
	if err := resp.Errors["rf4"]; !errors.Is(err, kafka.InvalidReplicationFactor) {
		t.Errorf("rf4: %v, want %v", err, kafka.InvalidReplicationFactor)
	}
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"rf3"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Brokers) != 3 || len(meta.Topics) != 1 || len(meta.Topics[0].Partitions[0].Replicas) != 3 {
		t.Fatalf("metadata: %d brokers, topics %+v", len(meta.Brokers), meta.Topics)
	}
}
