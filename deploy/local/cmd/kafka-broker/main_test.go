package main_test

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/deploy/local/testcert"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// TestRestartKeepsData: records written before a SIGTERM are served after a
// restart on the same -data-dir.
func TestRestartKeepsData(t *testing.T) {
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/deploy/local/cmd/kafka-broker")
	dataDir := filepath.Join(t.TempDir(), "kafka")
	addr := stacktest.FreeAddr(t)
	start := func() *stacktest.Process {
		p := stacktest.StartProcess(t, "kafka", bin, nil, "-addr", addr, "-data-dir", dataDir)
		p.WaitLine("kafka broker listening", 10*time.Second)
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	p := start()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: "wake", NumPartitions: 2, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors["wake"]; err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        "wake",
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		Balancer:     &kafka.Murmur2Balancer{},
	}
	if err := w.WriteMessages(ctx,
		kafka.Message{Key: []byte("a"), Value: []byte("1")},
		kafka.Message{Key: []byte("b"), Value: []byte("2")},
		kafka.Message{Key: []byte("c"), Value: []byte("3")},
	); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := p.Stop(); err != nil {
		t.Fatalf("kafka-broker exit after SIGTERM: %v", err)
	}
	p.WaitLine("kafka broker stopped", time.Second)

	start()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, Topic: "wake", GroupID: "g",
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond,
	})
	defer r.Close()
	got := map[string]string{}
	for len(got) < 3 {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("after restart, read %d of 3 records: %v", len(got), err)
		}
		got[string(m.Key)] = string(m.Value)
	}
	if got["a"] != "1" || got["b"] != "2" || got["c"] != "3" {
		t.Fatalf("records after restart: %v", got)
	}
}

// TestTLSAndSCRAM: with -tls-cert-file/-tls-key-file and -sasl-mechanism the broker answers a
// client that trusts its CA and authenticates with the password of the environment, and refuses
// a client with another password.
func TestTLSAndSCRAM(t *testing.T) {
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/deploy/local/cmd/kafka-broker")
	ca := testcert.NewCA(t)
	cert := ca.Server(t, "127.0.0.1")
	addr := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, "kafka", bin, []string{"WAKEPUSH_DEV_KAFKA_SASL_PASSWORD=broker-pw"},
		"-addr", addr, "-data-dir", "", "-tls-cert-file", cert.CertFile, "-tls-key-file", cert.KeyFile,
		"-sasl-mechanism", "scram-sha-512", "-sasl-user", "wakepush")
	p.WaitLine("kafka broker listening", 10*time.Second)

	for _, tc := range []struct {
		password string
		wantOK   bool
	}{{"broker-pw", true}, {"wrong", false}} {
		m, err := scram.Mechanism(scram.SHA512, "wakepush", tc.password)
		if err != nil {
			t.Fatal(err)
		}
		tr := &kafka.Transport{TLS: &tls.Config{RootCAs: ca.Pool()}, SASL: m}
		c := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr, Timeout: 5 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.Metadata(ctx, &kafka.MetadataRequest{})
		cancel()
		tr.CloseIdleConnections()
		if (err == nil) != tc.wantOK {
			t.Errorf("password %q: metadata %v, want ok=%v", tc.password, err, tc.wantOK)
		}
	}
}

func TestFlagErrors(t *testing.T) {
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/deploy/local/cmd/kafka-broker")
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"cert without key", nil, []string{"-tls-cert-file", "x.pem"}, "go together"},
		{"mechanism without password", nil, []string{"-sasl-mechanism", "plain", "-sasl-user", "u"}, "WAKEPUSH_DEV_KAFKA_SASL_PASSWORD"},
		{"unknown mechanism", []string{"WAKEPUSH_DEV_KAFKA_SASL_PASSWORD=p"}, []string{"-sasl-mechanism", "gssapi", "-sasl-user", "u"}, "want plain"},
		{"user without mechanism", nil, []string{"-sasl-user", "u"}, "needs -sasl-mechanism"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"WAKEPUSH_DEV_KAFKA_SASL_PASSWORD="}, tc.env...)
			p := stacktest.StartProcess(t, "kafka", bin, env, append([]string{"-addr", stacktest.FreeAddr(t), "-data-dir", ""}, tc.args...)...)
			if err := p.Wait(10 * time.Second); err == nil {
				t.Fatal("kafka-broker started")
			}
			if !strings.Contains(p.Output(), tc.want) {
				t.Fatalf("output %q lacks %q", p.Output(), tc.want)
			}
		})
	}
}
