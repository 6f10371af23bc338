// Package kafkabroker runs the Kafka broker of the local dev stack and of
// tests: a single-node in-process kfake cluster
// (github.com/twmb/franz-go/pkg/kfake) that speaks the Kafka wire protocol.
//
// Topics are never created here: every service applies its own topic specs
// with CreateTopics. Auto topic creation is disabled (kfake's default), so
// producing to or fetching from a topic nobody created fails with
// UNKNOWN_TOPIC_OR_PARTITION, the same as a production cluster configured with
// auto.create.topics.enable=false.
//
// For tests of transport security the broker can speak TLS (Options.TLS) and
// require SASL authentication (Options.SASL: PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512 users); kfake applies both to every listener.
package kafkabroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultAddr is the listen address of the dev stack's broker.
const DefaultAddr = "127.0.0.1:19092"

// Options configures Start.
type Options struct {
	// Addr is the host:port to listen on, e.g. "127.0.0.1:19092". Port 0
	// picks a free port; an empty host means 127.0.0.1. The host is what the
	// broker advertises in metadata responses, so it must be reachable by
	// clients (use a loopback address).
	Addr string
	// DataDir persists the cluster state (topics, records, committed
	// offsets) in this directory and reloads it on Start. Empty keeps
	// everything in memory.
	DataDir string
	// SyncWrites fsyncs every produced batch (only with DataDir). Without
	// it, writes are flushed on segment roll and on Close, like Kafka's
	// default; a crash (SIGKILL) can lose the latest batches.
	SyncWrites bool
	// Logger receives kfake's warnings and errors. Nil discards them.
	Logger *slog.Logger
	// DefaultPartitions is the partition count of CreateTopics requests
	// that ask for -1 partitions. Zero keeps kfake's default (10).
	DefaultPartitions int
	// Brokers is the number of brokers in the cluster (0 means 1). More than
	// one needs port 0 in Addr: each broker listens on a free port. Topics
	// can then be created with a replication factor up to Brokers.
	Brokers int
	// TLS makes every listener speak TLS with this configuration (its
	// Certificates; ClientAuth and ClientCAs for mutual TLS). Nil: plain TCP.
	TLS *tls.Config
	// SASL users; when there is any, every connection must authenticate
	// with one of them before any other request. They are superusers.
	SASL []SASLUser
	// ACLUsers are SASL users that are subject to ACLs: setting any turns
	// on kfake's ACL checks (EnableACLs), so every request of such a user
	// needs an ACL that allows it. The SASL users above stay superusers.
	ACLUsers []ACLUser
}

// ACLUser is a SASL account whose every request is checked against its
// ACLs (allow rules; anything not allowed is denied).
type ACLUser struct {
	SASLUser
	ACLs []ACL
}

// ACL allows one operation on one resource, as in a Strimzi KafkaUser's
// spec.authorization.acls.
type ACL struct {
	// Resource is "topic", "group", "cluster" or "transactionalId".
	Resource string
	// Name of the resource; ignored for "cluster".
	Name string
	// Prefixed matches every name starting with Name (else: literal).
	Prefixed bool
	// Operation: Read, Write, Create, Delete, Alter, Describe,
	// DescribeConfigs, AlterConfigs, IdempotentWrite or All.
	Operation string
}

var aclResources = map[string]kmsg.ACLResourceType{
	"topic": kmsg.ACLResourceTypeTopic, "group": kmsg.ACLResourceTypeGroup,
	"cluster": kmsg.ACLResourceTypeCluster, "transactionalId": kmsg.ACLResourceTypeTransactionalId,
}

var aclOperations = map[string]kmsg.ACLOperation{
	"All": kmsg.ACLOperationAll, "Read": kmsg.ACLOperationRead, "Write": kmsg.ACLOperationWrite,
	"Create": kmsg.ACLOperationCreate, "Delete": kmsg.ACLOperationDelete, "Alter": kmsg.ACLOperationAlter,
	"Describe": kmsg.ACLOperationDescribe, "DescribeConfigs": kmsg.ACLOperationDescribeConfigs,
	"AlterConfigs": kmsg.ACLOperationAlterConfigs, "IdempotentWrite": kmsg.ACLOperationIdempotentWrite,
}

func (a ACL) kfake() (kfake.ACL, error) {
	rt, ok := aclResources[a.Resource]
	if !ok {
		return kfake.ACL{}, fmt.Errorf("kafkabroker: ACL resource %q: want topic, group, cluster or transactionalId", a.Resource)
	}
	op, ok := aclOperations[a.Operation]
	if !ok {
		return kfake.ACL{}, fmt.Errorf("kafkabroker: ACL operation %q unknown", a.Operation)
	}
	name, pattern := a.Name, kmsg.ACLResourcePatternTypeLiteral
	if rt == kmsg.ACLResourceTypeCluster {
		name = "kafka-cluster"
	} else if a.Prefixed {
		pattern = kmsg.ACLResourcePatternTypePrefixed
	}
	return kfake.ACL{Resource: rt, Name: name, Pattern: pattern, Operation: op, Allow: true}, nil
}

// SASLUser is a SASL account of the broker.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism      string
	User, Password string
}

// Broker is a running single-node Kafka cluster.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
}

// Start starts a broker listening on opts.Addr.
func Start(opts Options) (*Broker, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafkabroker: invalid address %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("kafkabroker: invalid port in address %q", addr)
	}

	brokers := max(opts.Brokers, 1)
	if brokers > 1 && port != 0 {
		return nil, fmt.Errorf("kafkabroker: %d brokers need port 0 in address %q", brokers, addr)
	}
	ports := make([]int, brokers) // 0: a free port each
	ports[0] = port
	kopts := []kfake.Opt{
		kfake.Ports(ports...),
		// kfake always asks to listen on 127.0.0.1:<port>; listen on the
		// requested host instead.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, p, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
		kfake.ClusterID("wakepush-dev"),
	}
	if opts.Logger != nil {
		kopts = append(kopts, kfake.WithLogger(slogLogger{opts.Logger}))
	}
	if opts.DefaultPartitions > 0 {
		kopts = append(kopts, kfake.DefaultNumPartitions(opts.DefaultPartitions))
	}
	if opts.TLS != nil {
		kopts = append(kopts, kfake.TLS(opts.TLS))
	}
	if len(opts.SASL) > 0 {
		kopts = append(kopts, kfake.EnableSASL())
		for _, u := range opts.SASL {
			switch u.Mechanism {
			case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			default:
				return nil, fmt.Errorf("kafkabroker: SASL mechanism %q of user %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", u.Mechanism, u.User)
			}
			if u.User == "" || u.Password == "" {
				return nil, fmt.Errorf("kafkabroker: a %s SASL user needs a name and a password", u.Mechanism)
			}
			kopts = append(kopts, kfake.Superuser(u.Mechanism, u.User, u.Password))
		}
	}
	if len(opts.ACLUsers) > 0 {
		if len(opts.SASL) == 0 {
			kopts = append(kopts, kfake.EnableSASL())
		}
		kopts = append(kopts, kfake.EnableACLs())
		for _, u := range opts.ACLUsers {
			var acls []kfake.ACL
			for _, a := range u.ACLs {
				ka, err := a.kfake()
				if err != nil {
					return nil, err
				}
				acls = append(acls, ka)
			}
			kopts = append(kopts, kfake.User(u.Mechanism, u.User, u.Password, acls...))
		}
	}
	if opts.DataDir != "" {
		kopts = append(kopts, kfake.DataDir(opts.DataDir))
		if opts.SyncWrites {
			kopts = append(kopts, kfake.SyncWrites())
		}
	} else if opts.SyncWrites {
		return nil, errors.New("kafkabroker: SyncWrites requires DataDir")
	}

	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafkabroker: start on %s: %w", addr, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != brokers {
		c.Close()
		return nil, fmt.Errorf("kafkabroker: expected %d listener(s), got %v", brokers, addrs)
	}
	return &Broker{cluster: c, addrs: addrs}, nil
}

// Addr returns the bootstrap address (the first broker's), "host:port".
func (b *Broker) Addr() string { return b.addrs[0] }

// Addrs returns every broker's address.
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Cluster exposes the underlying kfake cluster for tests that need its
// controls (fault injection, Compact, ...).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker; with a DataDir it persists the state first. It is
// safe to call more than once.
func (b *Broker) Close() { b.cluster.Close() }

// slogLogger adapts slog to kfake.Logger. kfake logs every request at info
// level, so only warnings and errors are forwarded (debug when the handler is
// enabled for it).
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	default:
		l = slog.LevelDebug
	}
	ctx := context.Background()
	if !s.l.Enabled(ctx, l) {
		return
	}
	s.l.Log(ctx, l, fmt.Sprintf(format, args...), "component", "kfake")
}
