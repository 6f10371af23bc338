// Package stacktest holds the test helpers shared by the wakepush modules:
// an in-process Kafka broker per test, one ClickHouse server per test binary,
// building and running service binaries with their logs in the test log, and
// free ports.
//
// Packages that use ClickHouse or Build must route their tests through Main,
// which stops the shared server and removes the built binaries after the
// tests:
//
//	func TestMain(m *testing.M) { stacktest.Main(m) }
//
// ClickHouse needs libchdb (see package chdb): it is downloaded once into the
// user cache with npm. When it cannot be obtained, the test fails with the
// reason; it is never skipped.
package stacktest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/chdb"
	"github.com/wakepush/wakepush/deploy/local/freeport"
	"github.com/wakepush/wakepush/deploy/local/kafkabroker"
)

// mainCalled is set by Main; ClickHouse and Build refuse to run without it,
// since nothing else would stop the shared server or remove the binaries.
var mainCalled atomic.Bool

// Main runs the tests, then stops the shared ClickHouse server and removes
// the binaries built by Build, and exits with the tests' status. Call it from
// TestMain.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "stacktest:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func shutdown() error {
	var firstErr error
	ch.mu.Lock()
	if ch.srv != nil {
		if err := ch.srv.Stop(); err != nil {
			firstErr = err
		}
		ch.srv = nil
	}
	if ch.dir != "" {
		if err := os.RemoveAll(ch.dir); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	ch.mu.Unlock()

	builds.mu.Lock()
	if builds.dir != "" {
		if err := os.RemoveAll(builds.dir); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	builds.mu.Unlock()
	return firstErr
}

func requireMain(t testing.TB, what string) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatalf("stacktest.%s needs the package's tests to run through stacktest.Main: add\n\tfunc TestMain(m *testing.M) { stacktest.Main(m) }", what)
	}
}

// Kafka starts an in-memory Kafka broker (kfake, no auto topic creation) on a
// free loopback port for this test and returns its bootstrap address. The
// broker is closed when the test ends.
func Kafka(t testing.TB) string {
	t.Helper()
	return KafkaBroker(t).Addr()
}

// KafkaBroker is Kafka for tests that also need the broker's controls
// (Cluster(): fault injection, Compact, ...).
func KafkaBroker(t testing.TB) *kafkabroker.Broker {
	t.Helper()
	b, err := kafkabroker.Start(kafkabroker.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("stacktest: start Kafka: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

var ch struct {
	mu  sync.Mutex
	srv *chdb.Server
	dir string
	err error
}

// ClickHouse returns the test binary's ClickHouse server, starting it on the
// first call (data in a temporary directory, free ports). All tests of the
// package share it, so each should use its own database. Main stops it. The
// test fails if ClickHouse cannot be started (libchdb missing, npm missing,
// ...); the error is remembered, so later calls fail fast with it.
func ClickHouse(t testing.TB) *chdb.Server {
	t.Helper()
	requireMain(t, "ClickHouse")
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.srv == nil && ch.err == nil {
		ch.srv, ch.err = startClickHouse()
	}
	if ch.err != nil {
		t.Fatalf("stacktest: ClickHouse unavailable: %v", ch.err)
	}
	select {
	case <-ch.srv.Done():
		t.Fatalf("stacktest: the shared ClickHouse server exited: %v (log: %s)", ch.srv.Err(), filepath.Join(ch.dir, "clickhouse.log"))
	default:
	}
	return ch.srv
}

var dbSeq atomic.Int64

// ClickHouseDatabase creates a database of its own for this test on the
// shared server (ClickHouse) and returns the server and the database name;
// the database is dropped when the test ends. Connect with
// srv.DSN(db) (native protocol) or srv.HTTPAddr.
func ClickHouseDatabase(t testing.TB) (srv *chdb.Server, db string) {
	t.Helper()
	srv = ClickHouse(t)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	db = fmt.Sprintf("t%d_%s", dbSeq.Add(1), name)
	if err := clickhouseExec(srv, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	t.Cleanup(func() {
		if err := clickhouseExec(srv, "DROP DATABASE IF EXISTS "+db+" SYNC"); err != nil {
			t.Errorf("stacktest: %v", err)
		}
	})
	return srv, db
}

// clickhouseExec runs one statement over the HTTP interface.
func clickhouseExec(srv *chdb.Server, stmt string) error {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post("http://"+srv.HTTPAddr+"/", "text/plain", strings.NewReader(stmt))
	if err != nil {
		return fmt.Errorf("ClickHouse %q: %w", stmt, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ClickHouse %q: %s: %s", stmt, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func startClickHouse() (*chdb.Server, error) {
	dir, err := os.MkdirTemp("", "stacktest-clickhouse-")
	if err != nil {
		return nil, err
	}
	ch.dir = dir
	logPath := filepath.Join(dir, "clickhouse.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// The server keeps the file open via its own descriptors.
	defer logFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // includes a first download
	defer cancel()
	return chdb.Start(ctx, chdb.StartOptions{
		DataDir: filepath.Join(dir, "data"),
		Output:  logFile,
	})
}

var builds struct {
	mu    sync.Mutex
	dir   string
	byPkg map[string]*buildResult
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// Build builds the main package pkg (an import path, resolved from the test's
// working directory, so go.work applies) once per test binary and returns the
// binary's path. It adds -race when the test binary was built with -race.
// Concurrent calls for the same package wait for one build.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	requireMain(t, "Build")
	builds.mu.Lock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "stacktest-bin-")
		if err != nil {
			builds.mu.Unlock()
			t.Fatalf("stacktest: %v", err)
		}
		builds.dir = dir
		builds.byPkg = make(map[string]*buildResult)
	}
	r := builds.byPkg[pkg]
	if r == nil {
		r = &buildResult{}
		builds.byPkg[pkg] = r
	}
	n := len(builds.byPkg)
	dir := builds.dir
	builds.mu.Unlock()

	r.once.Do(func() {
		out := filepath.Join(dir, strconv.Itoa(n), path.Base(pkg))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			r.err = err
			return
		}
		args := []string{"build", "-o", out}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, pkg)
		began := time.Now()
		cmd := exec.Command("go", args...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go %v: %w\n%s", args, err, b)
			return
		}
		r.path = out
		t.Logf("stacktest: built %s in %s", pkg, time.Since(began).Round(time.Millisecond))
	})
	if r.err != nil {
		t.Fatalf("stacktest: %v", r.err)
	}
	return r.path
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, taken
// from outside the kernel's ephemeral range so that no outgoing connection
// can grab it before the child process binds it (see package freeport).
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	return p
}

// FreeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
