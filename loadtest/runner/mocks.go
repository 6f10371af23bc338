package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/wakepush/wakepush/loadtest/mockhost"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/procs"
)

// MocksPackage is the command that runs the provider mocks in a process of their own.
const MocksPackage = "github.com/wakepush/wakepush/loadtest/cmd/loadtest-mocks"

// providerMocks are the APNs and FCM mocks, in this process or in a child process.
type providerMocks interface {
	info() mockhost.Info
	// arrivals is every push the mocks accepted so far.
	arrivals(ctx context.Context) ([]mockhost.Arrival, error)
	// count is the number of pushes accepted so far (for the progress line; -1 unknown).
	count() int
	setAPNsOverride(ctx context.Context, o *apnsmock.Override) error
	// proc is the child process (nil: in this process).
	proc() *procs.Process
	close()
}

type inProcessMocks struct{ h *mockhost.Host }

func (m inProcessMocks) info() mockhost.Info { return m.h.Info }
func (m inProcessMocks) arrivals(context.Context) ([]mockhost.Arrival, error) {
	return m.h.Arrivals(), nil
}
func (m inProcessMocks) count() int { return m.h.Count() }
func (m inProcessMocks) setAPNsOverride(_ context.Context, o *apnsmock.Override) error {
	return m.h.SetAPNsOverride(o)
}
func (m inProcessMocks) proc() *procs.Process { return nil }
func (m inProcessMocks) close()               { m.h.Close() }

type childMocks struct {
	p    *procs.Process
	c    *mockhost.Client
	inf  mockhost.Info
	last atomic.Int64 // the last count read
}

func (m *childMocks) info() mockhost.Info { return m.inf }
func (m *childMocks) arrivals(ctx context.Context) ([]mockhost.Arrival, error) {
	return m.c.Arrivals(ctx)
}
func (m *childMocks) count() int {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if n, err := m.c.Count(ctx); err == nil {
		m.last.Store(int64(n))
	}
	return int(m.last.Load())
}
func (m *childMocks) setAPNsOverride(ctx context.Context, o *apnsmock.Override) error {
	return m.c.SetAPNsOverride(ctx, o)
}
func (m *childMocks) proc() *procs.Process { return m.p }
func (m *childMocks) close() {
	if m.p != nil && !m.p.Exited() {
		m.p.Stop()
	}
}

// startMocks starts the provider mocks for cfg: in this process, or (bin != "") as the child
// process bin (cmd/loadtest-mocks) with its log mocks.log in dir, serving runtime profiles on
// pprofAddr when it is not empty.
func startMocks(ctx context.Context, bin, dir string, cfg mockhost.Config, pprofAddr string) (providerMocks, error) {
	if bin == "" {
		h, err := mockhost.Start(cfg)
		if err != nil {
			return nil, err
		}
		return inProcessMocks{h}, nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgFile, ready := filepath.Join(dir, "mocks-config.json"), filepath.Join(dir, "mocks-ready.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		return nil, err
	}
	os.Remove(ready)
	args := []string{"-config", cfgFile, "-ready", ready}
	if pprofAddr != "" {
		args = append(args, "-pprof", pprofAddr)
	}
	p, err := procs.Start("mocks", bin, filepath.Join(dir, "mocks.log"), nil, args...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			var r mockhost.Ready
			if err := json.Unmarshal(b, &r); err != nil {
				p.Stop()
				return nil, fmt.Errorf("mocks: ready file: %w", err)
			}
			return &childMocks{p: p, c: mockhost.NewClient(r.Control), inf: r.Info}, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("the mocks exited before they were ready (%v); log: %s", p.Err(), p.Log)
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("the mocks were not ready after 60 s; log: %s", p.Log)
		}
	}
}
