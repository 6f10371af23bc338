// Package prosody runs a real Prosody XMPP server for tests: one VirtualHost with
// mod_cloud_notify (XEP-0357 push, from prosody-modules), smacks, offline storage, roster and
// plain SASL on loopback without TLS, plus an XEP-0114 component port with one Component (the
// App Server JID). Each Server lives in a temporary directory (config, data, log) and is
// stopped when the test ends.
//
//	srv := prosody.Start(t, prosody.Options{})
//	srv.CreateUser("alice", "password")
//	// connect a component to srv.ComponentAddr as srv.ComponentJID with srv.ComponentSecret,
//	// and clients to srv.C2SAddr; read srv.Log() to see what Prosody did.
//
// It needs the Debian packages prosody and prosody-modules (`apt-get install prosody
// prosody-modules`); when they are missing the test fails with that instruction. Set
// PROSODY_MODULES_DIR if mod_cloud_notify is installed somewhere else.
package prosody

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/childproc"
	"github.com/wakepush/wakepush/deploy/local/freeport"
)

// Options configures a server. The zero value is a usable default.
type Options struct {
	// Domain is the VirtualHost ("localhost").
	Domain string
	// ComponentJID is the Component's JID ("push." + Domain).
	ComponentJID string
	// ComponentSecret is the component secret (random when empty).
	ComponentSecret string
	// LogLevel is the minimum level written to the log file ("debug").
	LogLevel string
	// Modules are enabled in addition to the defaults: roster, saslauth, disco, offline,
	// smacks, cloud_notify, ping and posix.
	Modules []string
	// GlobalConfig is Lua appended to the global section (e.g. `push_max_errors = 2`).
	GlobalConfig string
	// StartTimeout bounds waiting for the ports (20s).
	StartTimeout time.Duration
	// ComponentTLS, when set, also accepts component connections over direct TLS at
	// Server.SecureComponentAddr with this certificate (see secure.go).
	ComponentTLS *CertFiles
}

// Server is a running Prosody.
type Server struct {
	// Domain is the VirtualHost; users are name@Domain.
	Domain string
	// C2SAddr is the client port, 127.0.0.1:PORT (plain, no TLS; PLAIN auth is allowed).
	C2SAddr string
	// ComponentAddr is the XEP-0114 component port, 127.0.0.1:PORT.
	ComponentAddr string
	// SecureComponentAddr is the direct TLS port that also accepts XEP-0114 (Options.ComponentTLS),
	// 127.0.0.1:PORT, or empty.
	SecureComponentAddr string
	// ComponentJID and ComponentSecret are the Component the server accepts.
	ComponentJID, ComponentSecret string
	// Dir holds ConfigPath, the data directory and LogPath.
	Dir, ConfigPath, LogPath string

	t    testing.TB
	proc *childproc.Process
	out  *lockedBuffer

	stopOnce sync.Once
}

// Binaries are the executables Start runs; tests may override them.
var (
	ProsodyBin    = "prosody"
	ProsodyctlBin = "prosodyctl"
)

// ModuleDirs are searched for mod_cloud_notify (prosody-modules) after $PROSODY_MODULES_DIR.
var ModuleDirs = []string{
	"/usr/lib/prosody/modules", // Debian/Ubuntu (prosody-modules installs beside the core modules)
	"/usr/lib/prosody-modules", // some packagings
	"/usr/local/lib/prosody/modules",
	"/usr/share/prosody-modules",
}

// CoreModuleDirs are searched for Prosody's own modules.
var CoreModuleDirs = []string{"/usr/lib/prosody/modules", "/usr/local/lib/prosody/modules", "/usr/lib64/prosody/modules"}

const installHint = "install Prosody and its community modules: apt-get install -y prosody prosody-modules"

// Available reports why a Prosody with mod_cloud_notify cannot be started here, or nil.
func Available() error {
	_, err := findSetup()
	return err
}

type setup struct {
	prosody, prosodyctl string
	pluginPaths         []string
}

func findSetup() (setup, error) {
	var s setup
	var err error
	if s.prosody, err = exec.LookPath(ProsodyBin); err != nil {
		return s, fmt.Errorf("prosody not found (%v): %s", err, installHint)
	}
	if s.prosodyctl, err = exec.LookPath(ProsodyctlBin); err != nil {
		return s, fmt.Errorf("prosodyctl not found (%v): %s", err, installHint)
	}
	dirs := ModuleDirs
	if d := os.Getenv("PROSODY_MODULES_DIR"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		for _, p := range []string{filepath.Join(d, "mod_cloud_notify", "mod_cloud_notify.lua"), filepath.Join(d, "mod_cloud_notify.lua")} {
			if _, err := os.Stat(p); err == nil {
				s.pluginPaths = append(s.pluginPaths, d)
				break
			}
		}
		if len(s.pluginPaths) > 0 {
			break
		}
	}
	if len(s.pluginPaths) == 0 {
		return s, fmt.Errorf("mod_cloud_notify not found in %v (set PROSODY_MODULES_DIR): %s", dirs, installHint)
	}
	for _, d := range CoreModuleDirs {
		if _, err := os.Stat(filepath.Join(d, "mod_c2s.lua")); err == nil && d != s.pluginPaths[0] {
			s.pluginPaths = append(s.pluginPaths, d)
			break
		}
	}
	return s, nil
}

// Start writes a configuration into a temporary directory, starts Prosody in the foreground
// and waits until its client and component ports are open. The server is stopped when the test
// ends; if the test failed, the end of Prosody's log is written to the test log.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	su, err := findSetup()
	if err != nil {
		t.Fatalf("prosody: %v", err)
	}
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	if opts.ComponentJID == "" {
		opts.ComponentJID = "push." + opts.Domain
	}
	if opts.ComponentSecret == "" {
		b := make([]byte, 12)
		rand.Read(b)
		opts.ComponentSecret = hex.EncodeToString(b)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 20 * time.Second
	}
	var lastErr error
	// A port picked as free can be taken before Prosody binds it (Prosody then runs without
	// it): try again with new ports.
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(t, su, opts)
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("prosody: %v", lastErr)
	return nil
}

var errPortTaken = errors.New("a port was taken")

func start(t testing.TB, su setup, opts Options) (*Server, error) {
	dir := t.TempDir()
	c2sPort, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	compPort, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Domain:          opts.Domain,
		C2SAddr:         net.JoinHostPort("127.0.0.1", strconv.Itoa(c2sPort)),
		ComponentAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(compPort)),
		ComponentJID:    opts.ComponentJID,
		ComponentSecret: opts.ComponentSecret,
		Dir:             dir,
		ConfigPath:      filepath.Join(dir, "prosody.cfg.lua"),
		LogPath:         filepath.Join(dir, "prosody.log"),
		t:               t,
		out:             &lockedBuffer{},
	}
	if opts.ComponentTLS != nil {
		securePort, err := freeport.Port()
		if err != nil {
			return nil, err
		}
		s.SecureComponentAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(securePort))
		opts.Modules = append(slices.Clip(opts.Modules), "net_multiplex")
	}
	for _, d := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, err
		}
	}
	cfg, err := s.config(su, opts, c2sPort, compPort)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(s.ConfigPath, []byte(cfg), 0o640); err != nil {
		return nil, err
	}
	proc := childproc.Command(stopTimeout, su.prosody, "-F", "--config", s.ConfigPath)
	proc.Cmd.Dir = dir
	proc.Cmd.Stdout = s.out
	proc.Cmd.Stderr = s.out
	proc.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := proc.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", su.prosody, err)
	}
	s.proc = proc
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prosody: end of %s:\n%s", s.LogPath, tail(s.Log(), 60))
			if o := s.out.String(); strings.TrimSpace(o) != "" {
				t.Logf("prosody: output:\n%s", tail(o, 30))
			}
		}
		s.Stop()
	})
	if err := s.waitReady(c2sPort, compPort, opts.StartTimeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady waits until Prosody logged that it listens on both ports (and they accept
// connections), or fails.
func (s *Server) waitReady(c2sPort, compPort int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c2sLine := fmt.Sprintf("Activated service 'c2s' on [127.0.0.1]:%d", c2sPort)
	compLine := fmt.Sprintf("Activated service 'component' on [127.0.0.1]:%d", compPort)
	for {
		select {
		case <-s.proc.Done():
			return fmt.Errorf("prosody exited during start (%v): %s\n%s", s.proc.Err(), tail(s.out.String(), 20), tail(s.Log(), 20))
		default:
		}
		log := s.Log()
		if strings.Contains(log, "Failed to open server port") {
			s.Stop()
			return fmt.Errorf("%w: %s", errPortTaken, tail(log, 5))
		}
		if strings.Contains(log, c2sLine) && strings.Contains(log, compLine) && dialable(s.C2SAddr) && dialable(s.ComponentAddr) && s.secureReady(log) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prosody did not open its ports within %s:\n%s\n%s", timeout, tail(s.out.String(), 20), tail(log, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// luaString quotes s as a Lua string literal.
func luaString(s string) (string, error) {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			return "", fmt.Errorf("control character in %q", s)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

func (s *Server) config(su setup, opts Options, c2sPort, compPort int) (string, error) {
	var firstErr error
	q := func(v string) string {
		out, err := luaString(v)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		return out
	}
	list := func(vs []string) string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = q(v)
		}
		return "{ " + strings.Join(out, ", ") + " }"
	}
	modules := append([]string{"roster", "saslauth", "disco", "offline", "smacks", "cloud_notify", "ping", "posix"}, opts.Modules...)
	var b strings.Builder
	fmt.Fprintf(&b, `-- Written by github.com/wakepush/wakepush/deploy/local/prosody for a test.
run_as_root = %t
daemonize = false
pidfile = %s
data_path = %s
certificates = %s
plugin_paths = %s
log = { { levels = { min = %s }, to = "file", filename = %s } }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %d }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
component_ports = { %d }
component_interfaces = { "127.0.0.1" }
http_ports = { }
https_ports = { }

-- Loopback only, for tests: no TLS, plain passwords.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
modules_enabled = %s
modules_disabled = { "tls", "s2s", "dialback" }
`, os.Geteuid() == 0, q(filepath.Join(s.Dir, "prosody.pid")), q(filepath.Join(s.Dir, "data")), q(filepath.Join(s.Dir, "certs")),
		list(su.pluginPaths), q(opts.LogLevel), q(s.LogPath), c2sPort, compPort, list(modules))
	b.WriteString(s.secureConfig(opts, q))
	if opts.GlobalConfig != "" {
		b.WriteString("\n" + opts.GlobalConfig + "\n")
	}
	fmt.Fprintf(&b, "\nVirtualHost %s\n\nComponent %s\n    component_secret = %s\n", q(opts.Domain), q(opts.ComponentJID), q(opts.ComponentSecret))
	return b.String(), firstErr
}

// CreateUser registers name@Domain with password (prosodyctl register). It fails the test on
// error.
func (s *Server) CreateUser(name, password string) {
	s.t.Helper()
	su, err := findSetup()
	if err != nil {
		s.t.Fatalf("prosody: %v", err)
	}
	cmd := exec.Command(su.prosodyctl, "--config", s.ConfigPath, "register", name, s.Domain, password)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("prosody: prosodyctl register %s %s: %v\n%s", name, s.Domain, err, out)
	}
}

// JID returns name@Domain.
func (s *Server) JID(name string) string { return name + "@" + s.Domain }

// Log returns Prosody's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// WaitLog waits until a log line contains substr and returns that line; it fails the test after
// timeout.
func (s *Server) WaitLog(substr string, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if line, ok := findLine(s.Log(), substr); ok {
			return line
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("prosody: no log line containing %q within %s; log ends:\n%s", substr, timeout, tail(s.Log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitLogCount waits until at least n log lines contain substr; it fails the test after timeout.
func (s *Server) WaitLogCount(substr string, n int, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := 0
		for _, l := range strings.Split(s.Log(), "\n") {
			if strings.Contains(l, substr) {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("prosody: %d log lines containing %q within %s, want %d; log ends:\n%s", got, substr, timeout, n, tail(s.Log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findLine(log, substr string) (string, bool) {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, substr) {
			return l, true
		}
	}
	return "", false
}

// stopTimeout is how long Stop waits after SIGTERM before it kills Prosody's process group.
const stopTimeout = 5 * time.Second

// Stop terminates Prosody (SIGTERM, then SIGKILL to its process group after 5s) and waits for
// it. It is safe to call more than once and is called when the test ends.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.proc == nil {
			return
		}
		err := s.proc.Stop()
		select {
		case <-s.proc.Done():
			if s.proc.Killed() {
				s.t.Logf("prosody: still running %s after SIGTERM: killed", stopTimeout)
			}
		default:
			s.t.Logf("prosody: %v", err) // not even SIGKILL ended it
		}
	})
}

// Done is closed when the Prosody process has exited.
func (s *Server) Done() <-chan struct{} { return s.proc.Done() }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
