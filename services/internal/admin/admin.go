// Package admin serves a service's operational endpoints: /livez, /readyz and /metrics on the
// admin address, and, only when explicitly enabled, the runtime profiles (/debug/pprof/) on a
// separate address (Profiler).
package admin

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is the admin HTTP server. Readiness starts false; the service marks itself ready once
// its dependencies are reachable and flips back to not ready when it starts draining.
type Server struct {
	srv *http.Server
	ln  net.Listener

	mu       sync.Mutex
	ready    bool
	notReady string
	checks   []Check
}

// Check is an extra readiness check (e.g. "kafka reachable"); it must return quickly.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// New listens on addr and serves metrics from metricsHandler (may be nil).
func New(addr string, metricsHandler http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	s := &Server{ln: ln, notReady: "starting"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if metricsHandler != nil {
		mux.Handle("GET /metrics", metricsHandler)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errorLog()}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddCheck adds a readiness check.
func (s *Server) AddCheck(c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, c)
}

// SetReady marks the service ready (true) or not ready with a reason.
func (s *Server) SetReady(ready bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready, s.notReady = ready, reason
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ready, reason, checks := s.ready, s.notReady, append([]Check(nil), s.checks...)
	s.mu.Unlock()
	if !ready {
		http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	for _, c := range checks {
		if err := c.Fn(ctx); err != nil {
			http.Error(w, fmt.Sprintf("not ready: %s: %v", c.Name, err), http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ok\n"))
}

// Serve serves until Shutdown.
func (s *Server) Serve(log *slog.Logger) {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("admin server stopped", "err", err)
	}
}

// errorLog sends net/http's own messages through the default slog logger (and so through the
// service's privacy guard) instead of the log package's stderr.
func errorLog() *log.Logger { return slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn) }

// Shutdown stops the server, waiting for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
