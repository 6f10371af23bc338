// Command apns-mock runs the wakepush mock of Apple's APNs provider API
// (package github.com/wakepush/wakepush/loadtest/mocks/apnsmock): HTTP/2 over TLS,
// token (JWT) and certificate (TLS client certificate) authentication, Apple's validation and error reasons, fault
// injection, a control API under /control/ and Prometheus metrics at /metrics.
//
// Every flag can also be set by an environment variable APNSMOCK_<FLAG> (upper
// case, "-" becomes "_"), e.g. APNSMOCK_ADDR or APNSMOCK_RATE_503; a flag on
// the command line wins. Repeatable flags take a comma-separated list from the
// environment.
//
//	apns-mock -addr 127.0.0.1:18443 -ca-out /tmp/apns-mock-ca.pem \
//	    -key TEAMID0001:KEYID00001:AuthKey_KEYID00001.p8 -topic im.example.chat \
//	    -latency 2ms -latency-jitter 3ms -rate-503 0.001
//
// -key registers a key from a .p8 private key, a PUBLIC KEY PEM or a
// certificate; -gen-key writes a new .p8 to the path if none exists there and
// registers it, so that a dev stack needs no real Apple key. -ca-cert/-ca-key
// keep the CA across restarts (loaded if both files exist, generated and
// written otherwise), so clients need not re-read -ca-out. -client-ca trusts a
// CA for certificate auth (issue client certificates with
// apnsmock.CA.IssueClientCert); -rate-goaway closes connections gracefully
// with an HTTP/2 GOAWAY.
//
// When ready it logs "apns-mock listening" (JSON, stdout) with the URL;
// GET /control/healthz answers 200. SIGINT/SIGTERM shut it down gracefully.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "apns-mock:", err)
		os.Exit(1)
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

type options struct {
	addr          string
	caOut         string
	caCert, caKey string
	hosts         listFlag
	keys          listFlag
	genKeys       listFlag
	topics        listFlag
	latency       time.Duration
	latencyJitter time.Duration
	rate500       float64
	rate503       float64
	rateStall     float64
	rateReset     float64
	rateDrop      float64
	perDevice     int
	perDeviceWin  time.Duration
	maxStreams    uint
	maxRecords    int
	logLevel      string
	rateGoAway    float64
	goAwayReason  string
	clientCAs     listFlag
	environment   string
}

func parseFlags(args []string, getenv func(string) string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("apns-mock", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:18443", "listen address")
	fs.StringVar(&o.caOut, "ca-out", "", "write the CA certificate (PEM) clients must trust to this file")
	fs.StringVar(&o.caCert, "ca-cert", "", "CA certificate PEM to load, or to create together with -ca-key")
	fs.StringVar(&o.caKey, "ca-key", "", "CA private key PEM to load, or to create together with -ca-cert")
	fs.Var(&o.hosts, "host", "extra DNS name or IP for the server certificate (repeatable)")
	fs.Var(&o.keys, "key", "TEAMID:KEYID:path to a .p8 or public key PEM to accept (repeatable)")
	fs.Var(&o.genKeys, "gen-key", "TEAMID:KEYID:path; create a .p8 signing key there unless it exists, and accept it (repeatable)")
	fs.Var(&o.topics, "topic", "bundle id to accept, with its .voip etc. variants (repeatable)")
	fs.DurationVar(&o.latency, "latency", 0, "added latency per request")
	fs.DurationVar(&o.latencyJitter, "latency-jitter", 0, "extra uniform random latency in [0, jitter]")
	fs.Float64Var(&o.rate500, "rate-500", 0, "fraction of valid pushes answered 500 InternalServerError")
	fs.Float64Var(&o.rate503, "rate-503", 0, "fraction of valid pushes answered 503 ServiceUnavailable")
	fs.Float64Var(&o.rateStall, "rate-stall", 0, "fraction of valid pushes never answered")
	fs.Float64Var(&o.rateReset, "rate-reset", 0, "fraction of valid pushes whose stream is reset (RST_STREAM)")
	fs.Float64Var(&o.rateDrop, "rate-drop", 0, "fraction of valid pushes whose connection is closed")
	fs.Float64Var(&o.rateGoAway, "rate-goaway", 0, "fraction of valid pushes after which their connection gets GOAWAY and closes gracefully")
	fs.StringVar(&o.goAwayReason, "goaway-reason", "", "answer the push that triggers a GOAWAY with this reason (e.g. Shutdown) instead of accepting it")
	fs.Var(&o.clientCAs, "client-ca", "CA certificate PEM file trusted for certificate (TLS client certificate) auth (repeatable)")
	fs.StringVar(&o.environment, "environment", "", "production, sandbox or empty (both): client certificates for the other environment get BadCertificateEnvironment")
	fs.IntVar(&o.perDevice, "per-device-limit", 0, "accepted pushes per device per window before 429 TooManyRequests (0: off)")
	fs.DurationVar(&o.perDeviceWin, "per-device-window", apnsmock.DefaultPerDeviceWindow, "per-device rate-limit window")
	fs.UintVar(&o.maxStreams, "max-streams", apnsmock.DefaultMaxConcurrentStreams, "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS")
	fs.IntVar(&o.maxRecords, "max-records", apnsmock.DefaultMaxRecords, "accepted pushes kept in memory (0 or negative: none)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error (debug logs every rejected push)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := "APNSMOCK_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(env)
		if err != nil || set[f.Name] || v == "" {
			return
		}
		values := []string{v}
		if _, repeatable := f.Value.(*listFlag); repeatable {
			values = strings.Split(v, ",")
		}
		for _, x := range values {
			if e := f.Value.Set(strings.TrimSpace(x)); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	for _, r := range []float64{o.rate500, o.rate503, o.rateStall, o.rateReset, o.rateDrop, o.rateGoAway} {
		if r < 0 || r > 1 {
			return nil, errors.New("rates must be within [0,1]")
		}
	}
	if (o.caCert == "") != (o.caKey == "") {
		return nil, errors.New("-ca-cert and -ca-key go together")
	}
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, logOut io.Writer) error {
	o, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))

	cfg := apnsmock.Config{
		Addr:                 o.addr,
		MaxConcurrentStreams: uint32(o.maxStreams),
		Rate500:              o.rate500,
		Rate503:              o.rate503,
		RateStall:            o.rateStall,
		RateReset:            o.rateReset,
		RateDrop:             o.rateDrop,
		RateGoAway:           o.rateGoAway,
		GoAwayReason:         o.goAwayReason,
		Environment:          o.environment,
		PerDeviceLimit:       o.perDevice,
		PerDeviceWindow:      o.perDeviceWin,
		MaxRecords:           o.maxRecords,
		Hosts:                o.hosts,
		Topics:               o.topics,
		Logger:               log,
	}
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = -1 // the flag's 0 means "keep none"
	}
	switch {
	case o.latencyJitter > 0:
		cfg.Latency = apnsmock.UniformLatency(o.latency, o.latency+o.latencyJitter)
	case o.latency > 0:
		cfg.Latency = apnsmock.FixedLatency(o.latency)
	}
	for _, file := range o.clientCAs {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("-client-ca: %w", err)
		}
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return fmt.Errorf("-client-ca %s: %w", file, err)
			}
			cfg.ClientCAs = append(cfg.ClientCAs, c)
		}
	}
	for _, spec := range o.keys {
		k, err := loadKey(spec, false)
		if err != nil {
			return err
		}
		cfg.Keys = append(cfg.Keys, k)
	}
	for _, spec := range o.genKeys {
		k, err := loadKey(spec, true)
		if err != nil {
			return err
		}
		cfg.Keys = append(cfg.Keys, k)
	}
	if o.caCert != "" {
		if cfg.CA, err = loadOrCreateCA(o.caCert, o.caKey); err != nil {
			return err
		}
	}

	srv, err := apnsmock.New(cfg)
	if err != nil {
		return err
	}
	if o.caOut != "" {
		if err := writeFileAtomic(o.caOut, srv.CACertPEM(), 0o644); err != nil {
			_ = srv.Close()
			return fmt.Errorf("-ca-out: %w", err)
		}
	}
	if len(cfg.Topics) == 0 || len(cfg.Keys) == 0 {
		log.Warn("no -topic or no -key/-gen-key given: pushes are rejected (TopicDisallowed / InvalidProviderToken) until registered via POST /control/topics and /control/keys")
	}
	log.Info("apns-mock listening", "url", srv.URL(), "ca_out", o.caOut,
		"keys", len(cfg.Keys), "topics", []string(o.topics))

	<-ctx.Done()
	log.Info("apns-mock shutting down")
	return srv.Close()
}

// loadKey parses "TEAMID:KEYID:path". With create, a missing file is created
// holding a new PKCS#8 (.p8) signing key.
func loadKey(spec string, create bool) (apnsmock.Key, error) {
	parts := strings.SplitN(spec, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return apnsmock.Key{}, fmt.Errorf("key %q: want TEAMID:KEYID:path", spec)
	}
	team, kid, path := parts[0], parts[1], parts[2]
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		var p8 []byte
		if _, p8, err = apnsmock.NewSigningKey(); err != nil {
			return apnsmock.Key{}, err
		}
		if err = writeFileAtomic(path, p8, 0o600); err != nil {
			return apnsmock.Key{}, fmt.Errorf("key %q: %w", spec, err)
		}
		data = p8
	} else if err != nil {
		return apnsmock.Key{}, fmt.Errorf("key %q: %w", spec, err)
	}
	var pub *ecdsa.PublicKey
	if pub, err = apnsmock.ParsePublicKeyPEM(data); err != nil {
		return apnsmock.Key{}, fmt.Errorf("key %q: %w", spec, err)
	}
	return apnsmock.Key{TeamID: team, KeyID: kid, Public: pub}, nil
}

func loadOrCreateCA(certPath, keyPath string) (*apnsmock.CA, error) {
	certPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	if errC == nil && errK == nil {
		return apnsmock.LoadCA(certPEM, keyPEM)
	}
	if !errors.Is(errC, os.ErrNotExist) && errC != nil {
		return nil, errC
	}
	if !errors.Is(errK, os.ErrNotExist) && errK != nil {
		return nil, errK
	}
	if (errC == nil) != (errK == nil) {
		return nil, fmt.Errorf("only one of %s and %s exists", certPath, keyPath)
	}
	ca, err := apnsmock.GenerateCA()
	if err != nil {
		return nil, err
	}
	kp, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, kp, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
