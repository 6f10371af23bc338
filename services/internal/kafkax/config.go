// Package kafkax is wakepush's Kafka platform code on segmentio/kafka-go: connection settings
// (TLS, SASL), topic migration, a producer that waits for acks=all and carries trace context in
// headers, and consumer helpers.
package kafkax

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/config"
)

// Config is how a service reaches Kafka.
type Config struct {
	Brokers       []string
	TLS           bool
	CAFile        string
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
	// SASLAllowPlaintext permits SASL PLAIN without TLS, which sends the password in clear.
	SASLAllowPlaintext bool
	Partitions         int
	ReplicationFactor  int
	// MinInsyncReplicas is min.insync.replicas of created topics (0: see topics.Layout).
	MinInsyncReplicas int
	BatchTimeout      time.Duration
	BatchSize         int
	// CreateTopics: EnsureTopics creates missing topics (true, and nil means true). False
	// (WAKEPUSH_KAFKA_CREATE_TOPICS=false) is for services without the rights to create topics:
	// EnsureTopics then only waits until `wakepushctl migrate` has created them.
	CreateTopics *bool
}

// Register adds the Kafka settings to s.
func (c *Config) Register(s *config.Set) {
	s.Strings(&c.Brokers, "kafka-brokers", "WAKEPUSH_KAFKA_BROKERS", "127.0.0.1:19092", "Kafka bootstrap brokers, comma-separated")
	s.Bool(&c.TLS, "kafka-tls", "WAKEPUSH_KAFKA_TLS", false, "connect to Kafka over TLS")
	s.String(&c.CAFile, "kafka-ca-file", "WAKEPUSH_KAFKA_CA_FILE", "", "PEM CA bundle to trust for Kafka TLS (default: system roots)")
	s.String(&c.SASLMechanism, "kafka-sasl-mechanism", "WAKEPUSH_KAFKA_SASL_MECHANISM", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512 (empty: none)")
	s.String(&c.SASLUsername, "kafka-sasl-username", "WAKEPUSH_KAFKA_SASL_USERNAME", "", "SASL user name")
	s.Secret(&c.SASLPassword, "WAKEPUSH_KAFKA_SASL_PASSWORD", "", "SASL password")
	s.Bool(&c.SASLAllowPlaintext, "kafka-sasl-allow-plaintext", "WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT", false, "allow SASL PLAIN without TLS (the password then crosses the network in clear)")
	s.Int(&c.Partitions, "kafka-partitions", "WAKEPUSH_KAFKA_PARTITIONS", 8, "partitions of every wakepush topic when created (all topics share the count)")
	s.Int(&c.ReplicationFactor, "kafka-replication-factor", "WAKEPUSH_KAFKA_REPLICATION_FACTOR", 1, "replication factor of topics when created (3 in production)")
	s.Int(&c.MinInsyncReplicas, "kafka-min-insync-replicas", "WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS", 0, "min.insync.replicas of topics when created; 0: 2 with a replication factor of 3 or more, else the broker's default")
	c.CreateTopics = new(true)
	s.Bool(c.CreateTopics, "kafka-create-topics", "WAKEPUSH_KAFKA_CREATE_TOPICS", true,
		"create missing topics at start; false: wait until they exist (created by wakepushctl migrate), for services without Kafka Create rights")
	s.Duration(&c.BatchTimeout, "kafka-batch-timeout", "WAKEPUSH_KAFKA_BATCH_TIMEOUT", 2*time.Millisecond, "how long the producer waits to fill a batch")
	s.Int(&c.BatchSize, "kafka-batch-size", "WAKEPUSH_KAFKA_BATCH_SIZE", 100, "most records in one produce batch per partition (the producer allocates room for this many per batch)")
}

// Validate reports every problem in c.
func (c *Config) Validate(chk *config.Check) {
	chk.Require(len(c.Brokers) > 0, "WAKEPUSH_KAFKA_BROKERS: at least one broker is required")
	switch strings.ToLower(c.SASLMechanism) {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		chk.Require(c.SASLUsername != "" && c.SASLPassword != "", "WAKEPUSH_KAFKA_SASL_USERNAME and _PASSWORD are required with SASL")
	default:
		chk.Require(false, "WAKEPUSH_KAFKA_SASL_MECHANISM=%q: want plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
	}
	chk.Require(!strings.EqualFold(c.SASLMechanism, "plain") || c.TLS || c.SASLAllowPlaintext,
		"WAKEPUSH_KAFKA_SASL_MECHANISM=plain sends the password in clear without TLS: set WAKEPUSH_KAFKA_TLS=true, use scram-sha-512, "+
			"or accept it with WAKEPUSH_KAFKA_SASL_ALLOW_PLAINTEXT=true")
	chk.Require(c.Partitions >= 1, "WAKEPUSH_KAFKA_PARTITIONS must be >= 1")
	chk.Require(c.ReplicationFactor >= 1, "WAKEPUSH_KAFKA_REPLICATION_FACTOR must be >= 1")
	chk.Require(c.MinInsyncReplicas >= 0 && c.MinInsyncReplicas <= max(c.ReplicationFactor, 1),
		"WAKEPUSH_KAFKA_MIN_INSYNC_REPLICAS must be 0 (default) or 1…WAKEPUSH_KAFKA_REPLICATION_FACTOR (%d), got %d", c.ReplicationFactor, c.MinInsyncReplicas)
	chk.Require(c.BatchTimeout > 0, "WAKEPUSH_KAFKA_BATCH_TIMEOUT must be > 0")
	chk.Require(c.BatchSize >= 1 && c.BatchSize <= 100000, "WAKEPUSH_KAFKA_BATCH_SIZE must be 1…100000, got %d", c.BatchSize)
	if c.CAFile != "" {
		chk.Require(c.TLS, "WAKEPUSH_KAFKA_CA_FILE is set but WAKEPUSH_KAFKA_TLS is not: set WAKEPUSH_KAFKA_TLS=true")
		_, err := c.tlsConfig()
		chk.Add(err)
	}
}

// Layout is how topics are created with c.
func (c *Config) Layout() topics.Layout {
	return topics.Layout{Partitions: c.Partitions, ReplicationFactor: c.ReplicationFactor, MinInsyncReplicas: c.MinInsyncReplicas}
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("WAKEPUSH_KAFKA_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("WAKEPUSH_KAFKA_CA_FILE %s: no PEM certificates", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func (c *Config) mechanism() (sasl.Mechanism, error) {
	switch strings.ToLower(c.SASLMechanism) {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.SASLUsername, c.SASLPassword)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.SASLUsername, c.SASLPassword)
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q", c.SASLMechanism)
}

// security is the TLS configuration and SASL mechanism of c (either may be nil).
func (c *Config) security() (*tls.Config, sasl.Mechanism, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	m, err := c.mechanism()
	if err != nil {
		return nil, nil, err
	}
	return tc, m, nil
}

// Transport returns a kafka-go transport (for writers and clients) with TLS and SASL applied.
func (c *Config) Transport() (*kafka.Transport, error) {
	tc, m, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{TLS: tc, SASL: m, ClientID: "wakepush"}, nil
}

// Dialer returns a kafka-go dialer (for readers and consumer groups) with TLS and SASL applied.
func (c *Config) Dialer() (*kafka.Dialer, error) {
	tc, m, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: tc, SASLMechanism: m, ClientID: "wakepush"}, nil
}

// Client returns a kafka-go admin client. Its transport keeps connections (and their
// goroutines) open: call CloseClient when done with a short-lived client.
func (c *Config) Client() (*kafka.Client, error) {
	t, err := c.Transport()
	if err != nil {
		return nil, err
	}
	return &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: t, Timeout: 10 * time.Second}, nil
}

// CloseClient releases the connections of a client made by Client.
func CloseClient(client *kafka.Client) {
	if t, ok := client.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
}

// EnsureTopics makes sure the named topics exist before a service uses them. With
// CreateTopics (the default) it applies their specs idempotently (see topics.Ensure), retrying
// while the brokers are not reachable yet until ctx ends. Without, it creates nothing and waits
// for them (WaitTopics). A broker that refuses the client — a certificate it does not trust, a
// failed SASL authentication — ends it at once: no retry fixes a configuration.
func (c *Config) EnsureTopics(ctx context.Context, names ...string) error {
	if c.CreateTopics != nil && !*c.CreateTopics {
		return c.WaitTopics(ctx, slog.Default(), names...)
	}
	specs, err := lookupSpecs(names)
	if err != nil {
		return err
	}
	return c.retry(ctx, "ensure topics", func(client *kafka.Client) error {
		return topics.Ensure(ctx, client, c.Layout(), specs...)
	})
}

// WaitLogInterval is how often WaitTopics logs what it is still waiting for.
const WaitLogInterval = 10 * time.Second

// WaitTopics waits until every named topic exists with the configured partition count, without
// creating or changing anything (it needs only Describe on the topics), logging what is missing
// every WaitLogInterval. When ctx ends first, the error names every topic that is missing or
// has another partition count.
func (c *Config) WaitTopics(ctx context.Context, log *slog.Logger, names ...string) error {
	specs, err := lookupSpecs(names)
	if err != nil {
		return err
	}
	client, err := c.Client()
	if err != nil {
		return err
	}
	defer CloseClient(client)
	var lastLog time.Time
	backoff := 100 * time.Millisecond
	for {
		var problem error
		status, err := topics.Verify(ctx, client, c.Layout(), specs...)
		if refused(err) || permanent(err) {
			return fmt.Errorf("wait for topics: %w", err)
		}
		if err != nil {
			problem = fmt.Errorf("Kafka not reachable: %w", err)
		} else {
			var errs []error
			for _, st := range status {
				errs = append(errs, st.Err)
			}
			problem = errors.Join(errs...)
		}
		if problem == nil {
			return nil
		}
		if lastLog.IsZero() || time.Since(lastLog) >= WaitLogInterval {
			log.Info("waiting for the Kafka topics (WAKEPUSH_KAFKA_CREATE_TOPICS=false: wakepushctl migrate creates them)", "missing", oneLine(problem))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Kafka topics not ready (WAKEPUSH_KAFKA_CREATE_TOPICS=false: run wakepushctl migrate, the Helm chart's pre-install hook): %s: %w", oneLine(problem), ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

// MigrateTopics applies every wakepush topic spec (topics.All) with topics.Migrate, retrying
// while the brokers are not reachable yet until ctx ends.
func (c *Config) MigrateTopics(ctx context.Context, opts topics.MigrateOptions) (topics.Result, error) {
	var res topics.Result
	err := c.retry(ctx, "migrate topics", func(client *kafka.Client) error {
		var err error
		res, err = topics.Migrate(ctx, client, c.Layout(), opts, topics.All...)
		return err
	})
	return res, err
}

// retry runs fn with a fresh client until it succeeds, the broker refuses the client, or ctx
// ends.
func (c *Config) retry(ctx context.Context, what string, fn func(*kafka.Client) error) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	defer CloseClient(client)
	backoff := 100 * time.Millisecond
	for {
		err = fn(client)
		if err == nil {
			return nil
		}
		// kafka-go reports a refused connection to CreateTopics as "broker not available";
		// a metadata request shows the cause.
		if _, merr := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}}); refused(merr) {
			return fmt.Errorf("%s: %w", what, merr)
		}
		if permanent(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 3*time.Second)
	}
}

// permanent reports an error no retry fixes: the broker denying the request, or a topic whose
// partition count migrating will not change.
func permanent(err error) bool {
	return errors.Is(err, topics.ErrPartitions) || errors.Is(err, kafka.TopicAuthorizationFailed) || errors.Is(err, kafka.ClusterAuthorizationFailed) ||
		errors.Is(err, kafka.GroupAuthorizationFailed)
}

func lookupSpecs(names []string) ([]topics.Spec, error) {
	specs := make([]topics.Spec, 0, len(names))
	for _, n := range names {
		s, ok := topics.Lookup(n)
		if !ok {
			return nil, fmt.Errorf("no topic spec for %q", n)
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// oneLine joins the lines of a joined error with "; ".
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// refused reports whether err is the broker and the client refusing each other's identity: an
// untrusted or misnamed certificate, or a SASL authentication the broker rejected.
func refused(err error) bool {
	var verify *tls.CertificateVerificationError
	var authority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &hostname) ||
		errors.Is(err, kafka.SASLAuthenticationFailed) || errors.Is(err, kafka.UnsupportedSASLMechanism) ||
		errors.Is(err, kafka.IllegalSASLState)
}

// Ping checks that a broker answers a metadata request (for readiness).
func (c *Config) Ping(ctx context.Context) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	defer CloseClient(client)
	_, err = client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil {
		return fmt.Errorf("kafka metadata: %w", err)
	}
	return nil
}
