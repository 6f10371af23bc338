// Command kafka-broker runs the local dev stack's Kafka broker: a
// single-node kfake cluster that persists to a data directory.
//
//	kafka-broker [-addr 127.0.0.1:19092] [-data-dir ./.data/kafka] [-sync-writes]
//	             [-tls-cert-file cert.pem -tls-key-file key.pem]
//	             [-sasl-mechanism plain|scram-sha-256|scram-sha-512 -sasl-user NAME]
//
// With -tls-cert-file and -tls-key-file the broker speaks only TLS. With
// -sasl-mechanism every client must authenticate as -sasl-user with the
// password in WAKEPUSH_DEV_KAFKA_SASL_PASSWORD (never a flag: flags show in
// ps). Point the services at it with WAKEPUSH_KAFKA_TLS, _CA_FILE and
// _SASL_*.
//
// Topics are not created here; each service creates its own. SIGINT/SIGTERM
// closes the broker, which writes its state to the data directory first.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := realMain(os.Args[1:], logger); err != nil {
		logger.Error("kafka-broker failed", "err", err)
		os.Exit(1)
	}
}

func realMain(args []string, logger *slog.Logger) error {
	defAddr := kafkabroker.DefaultAddr
	if v := os.Getenv("WAKEPUSH_DEV_KAFKA_ADDR"); v != "" {
		defAddr = v
	}
	fs := flag.NewFlagSet("kafka-broker", flag.ContinueOnError)
	addr := fs.String("addr", defAddr, "listen address host:port (env WAKEPUSH_DEV_KAFKA_ADDR)")
	dataDir := fs.String("data-dir", "./.data/kafka", "directory persisting topics, records and offsets; empty keeps them in memory")
	syncWrites := fs.Bool("sync-writes", false, "fsync every produced batch")
	certFile := fs.String("tls-cert-file", "", "PEM certificate chain: serve TLS only (with -tls-key-file)")
	keyFile := fs.String("tls-key-file", "", "PEM private key of -tls-cert-file")
	mechanism := fs.String("sasl-mechanism", "", "require SASL: plain, scram-sha-256 or scram-sha-512 (with -sasl-user and "+envSASLPassword+")")
	saslUser := fs.String("sasl-user", "", "the SASL user clients authenticate as")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	tlsCfg, err := serverTLS(*certFile, *keyFile)
	if err != nil {
		return err
	}
	users, err := saslUsers(*mechanism, *saslUser, os.Getenv(envSASLPassword))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := kafkabroker.Start(kafkabroker.Options{
		Addr:       *addr,
		DataDir:    *dataDir,
		SyncWrites: *syncWrites,
		Logger:     logger,
		TLS:        tlsCfg,
		SASL:       users,
	})
	if err != nil {
		return err
	}
	logger.Info("kafka broker listening", "addr", b.Addr(), "data_dir", *dataDir, "sync_writes", *syncWrites,
		"tls", tlsCfg != nil, "sasl_mechanism", *mechanism)
	<-ctx.Done()
	stop()
	logger.Info("shutting down kafka broker")
	b.Close()
	logger.Info("kafka broker stopped")
	return nil
}

// envSASLPassword holds the password of -sasl-user.
const envSASLPassword = "WAKEPUSH_DEV_KAFKA_SASL_PASSWORD"

// serverTLS loads the broker's certificate, or returns nil when neither file is given.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("-tls-cert-file and -tls-key-file go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// saslUsers is the one SASL user of the flags, or none without a mechanism.
func saslUsers(mechanism, user, password string) ([]kafkabroker.SASLUser, error) {
	if mechanism == "" {
		if user != "" {
			return nil, errors.New("-sasl-user needs -sasl-mechanism")
		}
		return nil, nil
	}
	m := strings.ToUpper(mechanism)
	switch m {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return nil, fmt.Errorf("-sasl-mechanism %q: want plain, scram-sha-256 or scram-sha-512", mechanism)
	}
	if user == "" || password == "" {
		return nil, fmt.Errorf("-sasl-mechanism needs -sasl-user and %s", envSASLPassword)
	}
	return []kafkabroker.SASLUser{{Mechanism: m, User: user, Password: password}}, nil
}
