package chdb

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/deploy/local/childproc"
	"github.com/wakepush/wakepush/deploy/local/freeport"
	"github.com/wakepush/wakepush/deploy/local/tlsproxy"
)

// ServerPackage is the import path of the launcher that Start builds.
const ServerPackage = "github.com/wakepush/wakepush/deploy/local/cmd/chdb-server"

// StartOptions configures Start.
type StartOptions struct {
	// Binary is a chdb-server binary to run. Empty builds ServerPackage into
	// <cache>/bin/chdb-server (see BuildServer).
	Binary string
	// Library is the libchdb.so to load. Empty uses EnsureLibrary.
	Library string
	// DataDir is the ClickHouse data directory (created if missing).
	// Required: a server on the same DataDir sees the data of earlier runs.
	DataDir string
	// ListenHost defaults to 127.0.0.1.
	ListenHost string
	// TCPPort (native protocol) and HTTPPort; 0 picks a free port.
	TCPPort, HTTPPort int
	// Output receives the server's stdout and stderr. Nil discards them (the
	// last lines still appear in Start's errors).
	Output io.Writer
	// ReadyTimeout bounds the wait for GET /ping; default 60 s.
	ReadyTimeout time.Duration
	// Users are accounts with passwords besides the passwordless default user.
	Users []User
	// TLS, when set, also serves the native protocol over TLS at Server.SecureTCPAddr with
	// this configuration (its certificate; ClientAuth and ClientCAs for mutual TLS). libchdb
	// cannot serve TLS itself: a terminator in this process forwards to TCPAddr (see
	// security.go).
	TLS *tls.Config
}

// Server is a running chdb-server subprocess.
type Server struct {
	// TCPAddr is the native protocol address (clickhouse-go), host:port.
	TCPAddr string
	// HTTPAddr is the HTTP interface address, host:port.
	HTTPAddr string
	// SecureTCPAddr is the native protocol over TLS (StartOptions.TLS), host:port, or empty.
	SecureTCPAddr string
	// DataDir is the absolute data directory.
	DataDir string

	proc *childproc.Process
	tail *tailBuffer
}

// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
const stopTimeout = 10 * time.Second

// Start launches a ClickHouse server and waits until it answers GET /ping.
func Start(ctx context.Context, opts StartOptions) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("chdb: StartOptions.DataDir is required")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("chdb: data dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("chdb: create data dir: %w", err)
	}
	host := opts.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	lib := opts.Library
	if lib == "" {
		if lib, err = EnsureLibrary(ctx); err != nil {
			return nil, err
		}
	}
	bin := opts.Binary
	if bin == "" {
		if bin, err = BuildServer(ctx); err != nil {
			return nil, err
		}
	}
	tcpPort, httpPort := opts.TCPPort, opts.HTTPPort
	for _, p := range []*int{&tcpPort, &httpPort} {
		if *p != 0 {
			continue
		}
		if *p, err = freeport.Port(); err != nil {
			return nil, fmt.Errorf("chdb: pick a free port: %w", err)
		}
	}

	s := &Server{
		TCPAddr:  net.JoinHostPort(host, strconv.Itoa(tcpPort)),
		HTTPAddr: net.JoinHostPort(host, strconv.Itoa(httpPort)),
		DataDir:  dataDir,
		tail:     &tailBuffer{max: 16 << 10},
	}
	var out io.Writer = s.tail
	if opts.Output != nil {
		out = io.MultiWriter(opts.Output, s.tail)
	}
	s.proc = childproc.Command(stopTimeout, bin,
		"-lib", lib,
		"-path", dataDir,
		"-tcp-port", strconv.Itoa(tcpPort),
		"-http-port", strconv.Itoa(httpPort),
		"-listen-host", host,
	)
	if len(opts.Users) > 0 {
		cfgFile, err := writeUsersConfig(filepath.Join(dataDir, ".wakepush-users"), opts.Users)
		if err != nil {
			return nil, err
		}
		s.proc.Cmd.Args = append(s.proc.Cmd.Args, "-config-file", cfgFile)
	}
	s.proc.Cmd.Stdout = out
	s.proc.Cmd.Stderr = out
	// Do not outlive the process that started the server (e.g. a test binary
	// that forgot to Stop it).
	s.proc.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.proc.Start(); err != nil {
		return nil, fmt.Errorf("chdb: start %s: %w", bin, err)
	}

	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if err := s.waitReady(ctx, timeout); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("chdb: %w\n--- chdb-server output (tail) ---\n%s", err, s.tail.String())
	}
	if opts.TLS != nil {
		proxy, err := tlsproxy.Start(net.JoinHostPort(host, "0"), s.TCPAddr, opts.TLS)
		if err != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("chdb: %w", err)
		}
		s.SecureTCPAddr = proxy.Addr()
		go func() { <-s.Done(); proxy.Close() }()
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + s.HTTPAddr + "/ping"
	var lastErr error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "Ok." {
				return nil
			}
			err = fmt.Errorf("GET %s: %s %q", url, resp.Status, body)
		}
		lastErr = err
		select {
		case <-s.proc.Done():
			return fmt.Errorf("chdb-server exited before it was ready: %v", s.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("chdb-server not ready after %s: %v", timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

// Pid is the server process's id (e.g. to sample its CPU use).
func (s *Server) Pid() int { return s.proc.Pid() }

// Err returns how the process ended, once Done is closed.
func (s *Server) Err() error { return s.proc.Err() }

// DSN returns a clickhouse-go DSN for the native protocol and database.
func (s *Server) DSN(database string) string {
	return "clickhouse://" + s.TCPAddr + "/" + database
}

// Stop sends SIGTERM, waits up to 10 s, then kills the server. It returns an
// error only if the process could not be stopped (its exit status is Err).
// Safe to call repeatedly.
func (s *Server) Stop() error {
	err := s.proc.Stop()
	select {
	case <-s.proc.Done():
		return nil
	default:
		return fmt.Errorf("chdb: stop server: %w", err)
	}
}

// BuildServer builds the chdb-server launcher into <cache>/bin/chdb-server
// with the go command (from this module's directory, so a go.work around it
// applies) and returns its path. The go build cache makes repeated calls
// cheap; concurrent callers are serialized with a file lock.
func BuildServer(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	binDir := filepath.Join(cache, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("chdb: create %s: %w", binDir, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(binDir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	dst := filepath.Join(binDir, "chdb-server")
	tmp := dst + ".tmp-" + strconv.Itoa(os.Getpid())
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, ServerPackage)
	cmd.Dir = moduleDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("chdb: go build %s (in %s): %w\n%s", ServerPackage, cmd.Dir, err, out)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("chdb: install chdb-server: %w", err)
	}
	return dst, nil
}

// moduleDir returns the directory of this module's source (deploy/local),
// or "" (the current directory) when the source is not on disk.
func moduleDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	dir := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return ""
	}
	return dir
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
		if i := bytes.IndexByte(t.buf, '\n'); i >= 0 {
			t.buf = t.buf[i+1:]
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
