// Command fcm-mock runs the wakepush mock of Firebase Cloud Messaging HTTP v1 and Google's
// OAuth2 token endpoint (package github.com/wakepush/wakepush/loadtest/mocks/fcmmock): HTTPS with
// HTTP/2, JWT-bearer service-account grants, FCM's error codes and JSON, fault injection, a
// control API under /control/ and Prometheus metrics at /metrics.
//
// Every flag can also be set by an environment variable FCMMOCK_<FLAG> (upper case, "-"
// becomes "_"), e.g. FCMMOCK_ADDR or FCMMOCK_RATE_503; a flag on the command line wins.
//
//	fcm-mock -addr 127.0.0.1:18444 -project wakepush-dev \
//	    -service-account-out /tmp/fcm-sa.json -ca-out /tmp/fcm-mock-ca.pem -rate-503 0.001
//
// -service-account-out writes a service account key (token_uri = this mock) that the sender's
// fcm.credentials_file can name; the account is valid while this process runs. When ready it
// logs "fcm-mock listening" (JSON, stdout) with the URL. SIGINT/SIGTERM shut it down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/fcmmock"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "fcm-mock:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends; ready (if set) gets the server once it listens.
func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer, ready func(*fcmmock.Server)) error {
	fs := flag.NewFlagSet("fcm-mock", flag.ContinueOnError)
	var (
		addr      = fs.String("addr", "127.0.0.1:18444", "listen address")
		project   = fs.String("project", fcmmock.DefaultProjectID, "project of the service account written by -service-account-out")
		saOut     = fs.String("service-account-out", "", "write a service account key JSON (token_uri = this mock) here")
		caOut     = fs.String("ca-out", "", "write the certificate clients must trust (PEM) here")
		hosts     = fs.String("hosts", "", "extra certificate names or IPs, comma-separated")
		streams   = fs.Uint("max-concurrent-streams", 1000, "HTTP/2 streams per connection")
		lifetime  = fs.Duration("token-lifetime", time.Hour, "access token lifetime")
		records   = fs.Int("max-records", 100_000, "accepted messages kept for /control/messages (negative: none)")
		rate500   = fs.Float64("rate-500", 0, "share of messages answered 500 INTERNAL")
		rate503   = fs.Float64("rate-503", 0, "share of messages answered 503 UNAVAILABLE")
		rate429   = fs.Float64("rate-429", 0, "share of messages answered 429 QUOTA_EXCEEDED")
		retry     = fs.Int("retry-after", 0, "Retry-After seconds of 503/429 answers (0: none)")
		devLimit  = fs.Int("per-device-limit", 0, "messages accepted per token per -per-device-window (0: unlimited; FCM: 240/min)")
		devWindow = fs.Duration("per-device-window", time.Minute, "window of -per-device-limit")
		latency   = fs.Duration("latency", 0, "fixed answer latency")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
	)
	fs.SetOutput(out)
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv("FCMMOCK_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("FCMMOCK_%s: %w", strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), err))
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: lvl}))
	f := fcmmock.Faults{Rate500: *rate500, Rate503: *rate503, Rate429: *rate429, RetryAfter: *retry,
		PerDeviceLimit: *devLimit, PerDeviceWindow: *devWindow}
	if d := *latency; d > 0 {
		f.Latency = func() time.Duration { return d }
	}
	var hs []string
	if *hosts != "" {
		hs = strings.Split(*hosts, ",")
	}
	srv, err := fcmmock.New(fcmmock.Config{Addr: *addr, ProjectID: *project, Hosts: hs, MaxConcurrentStreams: uint32(*streams),
		TokenLifetime: *lifetime, MaxRecords: *records, Faults: f, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *caOut != "" {
		if err := os.WriteFile(*caOut, srv.CACertPEM(), 0o644); err != nil {
			return err
		}
	}
	if *saOut != "" {
		if err := srv.WriteServiceAccount(*saOut, *project); err != nil {
			return err
		}
	}
	log.Info("fcm-mock listening", "url", srv.URL(), "token_url", srv.TokenURL(), "project", *project,
		"service_account", *saOut, "ca", *caOut)
	if ready != nil {
		ready(srv)
	}
	<-ctx.Done()
	return nil
}
