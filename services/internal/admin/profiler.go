package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Profiler serves net/http/pprof's runtime profiles under /debug/pprof/ on its own listener,
// apart from the admin endpoints: profiles reveal code, memory contents and timings and cost
// CPU, so they are off unless a service is given an address for them (WAKEPUSH_PPROF_ADDR), and
// that address should be loopback (reached with `kubectl port-forward`), never one a Service or
// ingress exposes. /debug/pprof/cmdline is not served: it prints the command line.
type Profiler struct {
	srv *http.Server
	ln  net.Listener
}

// NewProfiler listens on addr.
func NewProfiler(addr string) (*Profiler, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // the index and the named profiles (heap, allocs, goroutine, …)
	mux.HandleFunc("/debug/pprof/cmdline", http.NotFound)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No WriteTimeout: a CPU profile or trace streams for its ?seconds=.
	return &Profiler{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errorLog()}}, nil
}

// Addr is the address the profiler listens on.
func (p *Profiler) Addr() string { return p.ln.Addr().String() }

// Serve serves until Shutdown.
func (p *Profiler) Serve(log *slog.Logger) {
	if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("pprof server stopped", "err", err)
	}
}

// Shutdown stops the server, waiting for in-flight requests until ctx ends.
func (p *Profiler) Shutdown(ctx context.Context) error { return p.srv.Shutdown(ctx) }

// Loopback reports whether addr (host:port) listens only on the loopback interface.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
