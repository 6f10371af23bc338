// Package service is what every wakepush binary shares around its own work: signal handling,
// the logger, OpenTelemetry, the admin server (/livez, /readyz, /metrics) and, only when
// WAKEPUSH_PPROF_ADDR is set, the profiler on its own address.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/services/internal/admin"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/heapfloor"
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
	AdminAddr string
	// PprofAddr is where /debug/pprof/ is served; empty (the default) turns profiling off.
	PprofAddr    string
	LogFormat    string
	LogLevel     string
	DrainTimeout time.Duration
	// GCHeapFloorMiB is the garbage collector's heap floor (package heapfloor); 0 turns it off.
	// It is not started when GOGC is set: an operator's GOGC wins.
	GCHeapFloorMiB int

	// set is where the service's settings were registered: Start takes the secrets' values
	// from it so that the logger redacts them.
	set *config.Set
}

// Register adds the common settings to s; defaultAdmin is the service's default admin address.
func (f *Flags) Register(s *config.Set, defaultAdmin string) {
	f.set = s
	s.String(&f.AdminAddr, "admin-addr", "WAKEPUSH_ADMIN_ADDR", defaultAdmin, "address of /livez, /readyz and /metrics")
	s.String(&f.PprofAddr, "pprof-addr", "WAKEPUSH_PPROF_ADDR", "",
		"address of the runtime profiles (/debug/pprof/, without cmdline); empty: profiling off. Use a loopback address (127.0.0.1:6060), never one that is exposed")
	s.String(&f.LogFormat, "log-format", "WAKEPUSH_LOG_FORMAT", "json", "log format: json or text")
	s.String(&f.LogLevel, "log-level", "WAKEPUSH_LOG_LEVEL", "info", "log level: debug, info, warn or error")
	s.Duration(&f.DrainTimeout, "drain-timeout", "WAKEPUSH_DRAIN_TIMEOUT", 20*time.Second, "how long shutdown may take to drain in-flight work")
	s.Int(&f.GCHeapFloorMiB, "gc-heap-floor-mib", "WAKEPUSH_GC_HEAP_FLOOR_MIB", 64,
		"the Go GC's heap goal is at least this many MiB (then 2 × the live heap, as GOGC=100); fewer GC cycles for a small live heap. 0: off. Ignored when GOGC is set")
}

// Validate checks the common settings.
func (f *Flags) Validate(chk *config.Check) {
	chk.Require(f.AdminAddr != "", "WAKEPUSH_ADMIN_ADDR is required")
	chk.Require(f.PprofAddr == "" || f.PprofAddr != f.AdminAddr || strings.HasSuffix(f.AdminAddr, ":0"), "WAKEPUSH_PPROF_ADDR must differ from WAKEPUSH_ADMIN_ADDR (profiles are never served with the admin endpoints)")
	chk.Require(f.DrainTimeout > 0, "WAKEPUSH_DRAIN_TIMEOUT must be > 0")
	chk.Require(f.GCHeapFloorMiB >= 0 && f.GCHeapFloorMiB <= 1<<20, "WAKEPUSH_GC_HEAP_FLOOR_MIB must be between 0 (off) and 1048576")
}

// Base is a started service's shared machinery.
type Base struct {
	Name      string
	Log       *slog.Logger
	Admin     *admin.Server
	Telemetry *telemetry.Providers
	// Profiler serves /debug/pprof/; nil when WAKEPUSH_PPROF_ADDR is empty.
	Profiler *admin.Profiler
	flags    Flags
	floor    *heapfloor.Floor
}

// Start builds the logger and telemetry and starts serving the admin endpoints (not ready yet)
// and, when enabled, the profiler.
func Start(ctx context.Context, name string, f Flags) (*Base, error) {
	var secrets []string
	if f.set != nil {
		secrets = f.set.SecretValues()
	}
	log, err := logging.New(os.Stderr, f.LogFormat, f.LogLevel, name, secrets...)
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
	b := &Base{Name: name, Log: log, Admin: adm, Telemetry: tel, flags: f}
	if f.PprofAddr != "" {
		if b.Profiler, err = admin.NewProfiler(f.PprofAddr); err != nil {
			_ = adm.Shutdown(ctx)
			_ = tel.Shutdown(ctx)
			return nil, err
		}
		go b.Profiler.Serve(log)
		if !admin.Loopback(b.Profiler.Addr()) {
			log.Warn("profiling is served on a non-loopback address: anyone who reaches it can read profiles", "pprof", b.Profiler.Addr())
		}
	}
	b.floor = startHeapFloor(log, f.GCHeapFloorMiB)
	log.Info("starting", "version", Version, "admin", adm.Addr(), "pprof", profilerAddr(b.Profiler))
	return b, nil
}

func profilerAddr(p *admin.Profiler) string {
	if p == nil {
		return "off"
	}
	return p.Addr()
}

// startHeapFloor starts the GC heap floor unless it is off or GOGC is set.
func startHeapFloor(log *slog.Logger, mib int) *heapfloor.Floor {
	if gogc, set := os.LookupEnv("GOGC"); set {
		if mib > 0 {
			log.Info("GOGC is set: the GC heap floor stays off", "gogc", gogc)
		}
		return heapfloor.Start(0)
	}
	return heapfloor.Start(uint64(mib) << 20)
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
	if b.Profiler != nil {
		if err := b.Profiler.Shutdown(ctx); err != nil {
			b.Log.Warn("pprof shutdown", "err", err)
		}
	}
	b.floor.Stop()
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
