// Package service is what every wakepush binary shares around its own work: signal handling,
// the logger, OpenTelemetry, and the admin server (/livez, /readyz, /metrics).
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/services/internal/admin"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/logging"
	"github.com/wakepush/wakepush/services/internal/telemetry"
)

// Version is set at build time with -ldflags "-X .../service.Version=…".
var Version = "dev"

// Main runs run with a context cancelled on SIGTERM or SIGINT and exits non-zero on error.
func Main(name string, run func(ctx context.Context, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Flags are the settings every service has.
type Flags struct {
	AdminAddr    string
	LogFormat    string
	LogLevel     string
	DrainTimeout time.Duration
}

// Register adds the common settings to s; defaultAdmin is the service's default admin address.
func (f *Flags) Register(s *config.Set, defaultAdmin string) {
	s.String(&f.AdminAddr, "admin-addr", "WAKEPUSH_ADMIN_ADDR", defaultAdmin, "address of /livez, /readyz, /metrics and /debug/pprof")
	s.String(&f.LogFormat, "log-format", "WAKEPUSH_LOG_FORMAT", "json", "log format: json or text")
	s.String(&f.LogLevel, "log-level", "WAKEPUSH_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	s.Duration(&f.DrainTimeout, "drain-timeout", "WAKEPUSH_DRAIN_TIMEOUT", 20*time.Second, "how long shutdown may take to drain in-flight work")
}

// Validate checks the common settings.
func (f *Flags) Validate(chk *config.Check) {
	chk.Require(f.AdminAddr != "", "WAKEPUSH_ADMIN_ADDR is required")
	chk.Require(f.DrainTimeout > 0, "WAKEPUSH_DRAIN_TIMEOUT must be > 0")
}

// Base is a started service's shared machinery.
type Base struct {
	Name      string
	Log       *slog.Logger
	Admin     *admin.Server
	Telemetry *telemetry.Providers
	flags     Flags
}

// Start builds the logger and telemetry and starts serving the admin endpoints (not ready yet).
func Start(ctx context.Context, name string, f Flags) (*Base, error) {
	log, err := logging.New(os.Stderr, f.LogFormat, f.LogLevel, name)
	if err != nil {
		return nil, err
	}
	slog.SetDefault(log)
	tel, err := telemetry.Setup(ctx, name, Version)
	if err != nil {
		return nil, err
	}
	adm, err := admin.New(f.AdminAddr, tel.MetricsHandler)
	if err != nil {
		return nil, err
	}
	go adm.Serve(log)
	log.Info("starting", "version", Version, "admin", adm.Addr())
	return &Base{Name: name, Log: log, Admin: adm, Telemetry: tel, flags: f}, nil
}

// DrainContext returns a fresh context bounded by the drain timeout, for shutdown work that must
// run after the run context was cancelled.
func (b *Base) DrainContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.flags.DrainTimeout)
}

// Close flushes telemetry and stops the admin server. Call it last.
func (b *Base) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Telemetry.Shutdown(ctx); err != nil {
		b.Log.Warn("telemetry shutdown", "err", err)
	}
	if err := b.Admin.Shutdown(ctx); err != nil {
		b.Log.Warn("admin shutdown", "err", err)
	}
	b.Log.Info("stopped")
}

// StartErr turns an error caused by a shutdown during start (SIGTERM before the service was
// ready) into a clean stop, and passes any other error through.
func (b *Base) StartErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		b.Log.Info("stopped while starting", "err", err)
		return nil
	}
	return err
}

// CloseReader closes a Kafka reader (so its group rebalances at once) and logs a failure.
func (b *Base) CloseReader(r interface{ Close() error }) {
	if err := r.Close(); err != nil {
		b.Log.Warn("close Kafka reader", "err", err)
	}
}
