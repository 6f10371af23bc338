// Package jaeger builds, configures and runs the dev stack's trace backend: Jaeger v1.75.0
// all-in-one (the jaeger v2 binary: an OpenTelemetry Collector with an OTLP receiver, in-memory
// trace storage and the query service), and reads traces back through its query API.
//
// The binary is built from its own module, deploy/tools/jaeger (outside go.work, so Jaeger's
// dependencies never touch the service modules), with GOWORK=off and `nice -n 10`, once, into
// <cache>/bin/jaeger-<Version> (the cache is chdb.CacheDir: $WAKEPUSH_CACHE_DIR or
// ~/.cache/wakepush). A cold build takes ~8 min and ~2.2 GB of memory on the 2-core dev machine;
// an interrupted build resumes from the go build cache.
//
// The Go-built binary serves only a placeholder page at / (jaeger-ui's assets are built with
// npm from the jaeger-ui repository and embedded by Jaeger's release build; they are not
// published on the npm registry), so traces are read through the query API: /api/v3/traces/<id>
// (OTLP JSON) and /api/traces/<id> (Jaeger JSON).
package jaeger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/childproc"
)

const (
	// Version is the pinned Jaeger release; deploy/tools/jaeger/go.mod requires the same.
	Version = "v1.75.0"
	// Package is the main package of the all-in-one binary.
	Package = "github.com/jaegertracing/jaeger/cmd/jaeger"
	// ModuleDir is the tools module, relative to the repository root.
	ModuleDir = "deploy/tools/jaeger"
)

// BinaryPath returns where the pinned binary is (or will be) cached.
func BinaryPath() (string, error) {
	cache, err := chdb.CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "bin", "jaeger-"+Version), nil
}

// Cached returns the cached binary's path and whether it is there.
func Cached() (string, bool) {
	p, err := BinaryPath()
	if err != nil {
		return "", false
	}
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// FindRoot walks up from dir to the repository root (the directory holding go.work).
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("jaeger: no go.work in %s or above", dir)
		}
	}
}

// Build returns the cached binary, building it first when it is missing: `nice -n 10 go build`
// in <root>/deploy/tools/jaeger with GOWORK=off, into a temporary file renamed into place.
// Concurrent callers, in this or other processes, wait for one build (a lock file beside the
// binary). The build's output goes to out. Cancelling ctx kills the build; the go build cache
// keeps what was compiled, so the next call goes on from there.
func Build(ctx context.Context, root string, out io.Writer) (string, error) {
	bin, err := BinaryPath()
	if err != nil {
		return "", err
	}
	if p, ok := Cached(); ok {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	unlock, err := lockFile(ctx, bin+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if p, ok := Cached(); ok { // another process built it meanwhile
		return p, nil
	}
	stale, _ := filepath.Glob(bin + ".tmp-*")
	for _, f := range stale {
		_ = os.Remove(f)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	args := []string{"build", "-o", tmp, Package}
	name := "go"
	if nice, err := exec.LookPath("nice"); err == nil {
		name, args = nice, append([]string{"-n", "10", "go"}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = filepath.Join(root, ModuleDir)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	cmd.Stdout, cmd.Stderr = out, out
	// The go command's children (compile, link) are in its process group: kill them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Run(); err != nil {
		_ = os.Remove(tmp)
		if ctx.Err() != nil {
			return "", fmt.Errorf("jaeger: build interrupted: %w", ctx.Err())
		}
		return "", fmt.Errorf("jaeger: go build %s in %s: %w", Package, ModuleDir, err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("jaeger: %w", err)
	}
	return bin, nil
}

// lockFile takes an exclusive lock on path (flock), waiting until ctx ends. The returned func
// releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	fl := flock.New(path)
	if _, err := fl.TryLockContext(ctx, 500*time.Millisecond); err != nil {
		return nil, fmt.Errorf("jaeger: waiting for %s (another process is building Jaeger): %w", path, err)
	}
	return func() { _ = fl.Unlock() }, nil
}

// Ports are the loopback ports Jaeger listens on. Nothing else is opened: no Jaeger/Zipkin
// receivers, no OTLP/gRPC, no remote sampling, no internal metrics port.
type Ports struct {
	OTLPHTTP  int // OTLP/HTTP receiver: the services' OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	QueryHTTP int // query API (and the placeholder UI)
	QueryGRPC int // query gRPC API (the extension always serves it)
	Health    int // healthcheckv2: /status answers 200 once every component started
}

// Config returns the collector configuration of an in-memory all-in-one on 127.0.0.1 with ports.
func Config(p Ports) string {
	return fmt.Sprintf(`# Generated by deploy/local/jaeger: Jaeger %[1]s all-in-one, in memory, loopback only.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[5]d
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:%[4]d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%[2]d
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, Version, p.OTLPHTTP, p.QueryHTTP, p.QueryGRPC, p.Health)
}

// TracesEndpoint is the OTLP/HTTP traces URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
func (p Ports) TracesEndpoint() string {
	return fmt.Sprintf("http://127.0.0.1:%d/v1/traces", p.OTLPHTTP)
}

// QueryURL is the base URL of the query API (and the placeholder UI).
func (p Ports) QueryURL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.QueryHTTP) }

// HealthURL answers 200 once Jaeger is ready.
func (p Ports) HealthURL() string { return fmt.Sprintf("http://127.0.0.1:%d/status", p.Health) }

// Client returns a query client for the server.
func (p Ports) Client() *Client { return NewClient(p.QueryURL()) }

// WriteConfig writes Config(p) to dir/jaeger.yaml and returns the --config argument for it.
func WriteConfig(dir string, p Ports) (string, error) {
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(Config(p)), 0o644); err != nil {
		return "", fmt.Errorf("jaeger: %w", err)
	}
	return "file:" + cfg, nil
}

// Server is a running Jaeger.
type Server struct {
	Ports
	proc *childproc.Process
}

// Start writes the configuration into dir and starts bin with it; its output goes to out. It
// returns once Jaeger is healthy.
func Start(ctx context.Context, bin, dir string, p Ports, out io.Writer) (*Server, error) {
	cfg, err := WriteConfig(dir, p)
	if err != nil {
		return nil, err
	}
	proc := childproc.Command(10*time.Second, bin, "--config", cfg)
	proc.Cmd.Stdout, proc.Cmd.Stderr = out, out
	proc.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := proc.Start(); err != nil {
		return nil, fmt.Errorf("jaeger: start: %w", err)
	}
	s := &Server{Ports: p, proc: proc}
	if err := s.waitHealthy(ctx, 60*time.Second); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = getOK(ctx, s.HealthURL()); last == nil {
			return nil
		}
		select {
		case <-s.proc.Done():
			return fmt.Errorf("jaeger exited before it was ready: %v", s.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("jaeger not ready after %s: %v", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Done is closed when the process has exited.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

// Stop ends Jaeger (SIGTERM, then SIGKILL after 10 s). Safe to call repeatedly.
func (s *Server) Stop() error {
	err := s.proc.Stop()
	select {
	case <-s.proc.Done():
		return nil
	default:
		return fmt.Errorf("jaeger: stop: %w", err)
	}
}

// ToolsModuleVersion reads the Jaeger version deploy/tools/jaeger/go.mod requires.
func ToolsModuleVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, ModuleDir, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "github.com/jaegertracing/jaeger" {
			return f[1], nil
		}
	}
	return "", errors.New("jaeger: deploy/tools/jaeger/go.mod does not require github.com/jaegertracing/jaeger")
}

// getOK reports nil when u answers 200.
func getOK(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}
