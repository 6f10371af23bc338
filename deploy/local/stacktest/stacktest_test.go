package stacktest_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const chatty = "./testdata/chatty"

func TestBuild(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, chatty)
	if again := stacktest.Build(t, chatty); again != bin {
		t.Fatalf("second Build returned %s, want cached %s", again, bin)
	}
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	wantRace := strings.Contains(string(out), "-race=true")
	if wantRace != stacktest.RaceEnabledForTest {
		t.Fatalf("binary built with -race=%v, test binary with -race=%v\n%s", wantRace, stacktest.RaceEnabledForTest, out)
	}
}

func TestProcess(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, chatty)
	tests := []struct {
		name     string
		args     []string
		wantLine string
		wantCode int // after Stop (or exit)
	}{
		{name: "stdout", wantLine: "hello from stdout"},
		{name: "stderr", wantLine: "hello from stderr"},
		{name: "env", wantLine: "env WAKEPUSH_TEST=from-test"},
		{name: "partial last line", args: []string{"-exit", "3"}, wantLine: "no trailing newline", wantCode: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := stacktest.StartProcess(t, "chatty", bin, []string{"WAKEPUSH_TEST=from-test"}, tc.args...)
			p.WaitLine(tc.wantLine, 10*time.Second)
			err := p.Stop()
			if tc.wantCode == 0 && err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if got := p.ExitCode(); got != tc.wantCode {
				t.Fatalf("exit code %d, want %d", got, tc.wantCode)
			}
			if tc.wantCode == 0 && !strings.Contains(p.Output(), "got SIGTERM, bye") {
				t.Fatalf("no graceful exit in output:\n%s", p.Output())
			}
		})
	}
}

func TestProcessWaitHTTP(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, chatty)
	addr := stacktest.FreeAddr(t)
	p := stacktest.StartProcess(t, "web", bin, nil, "-http", addr, "-ready-after", "300ms")
	began := time.Now()
	p.WaitHTTP("http://"+addr+"/healthz", 10*time.Second)
	if d := time.Since(began); d < 250*time.Millisecond {
		t.Fatalf("WaitHTTP returned after %s, before the server was ready", d)
	}
	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
	if p.ExitCode() != -1 {
		t.Fatalf("exit code %d after SIGKILL, want -1", p.ExitCode())
	}
}

func TestProcessSignal(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, chatty)
	p := stacktest.StartProcess(t, "sig", bin, nil)
	p.WaitLine("hello from stdout", 10*time.Second)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestProcessOutlivesTestLogging: a process that keeps printing is stopped
// when its (sub)test ends, and nothing is logged to the finished test (which
// would panic).
func TestProcessOutlivesTestLogging(t *testing.T) {
	t.Parallel()
	bin := stacktest.Build(t, chatty)
	var p *stacktest.Process
	t.Run("sub", func(t *testing.T) {
		p = stacktest.StartProcess(t, "ticker", bin, nil, "-every", "1ms")
		p.WaitLine("tick 20", 10*time.Second)
	})
	select {
	case <-p.Done():
	default:
		t.Fatal("process still running after its test ended")
	}
	time.Sleep(50 * time.Millisecond)
}

func TestFreePort(t *testing.T) {
	t.Parallel()
	port := stacktest.FreePort(t)
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
	l, err := net.Listen("tcp", stacktest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

func TestKafka(t *testing.T) {
	t.Parallel()
	addr := stacktest.Kafka(t)
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: "t", NumPartitions: 2, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors["t"]; err != nil {
		t.Fatal(err)
	}
	if other := stacktest.Kafka(t); other == addr {
		t.Fatal("two Kafka calls returned the same broker")
	}
}

func TestClickHouse(t *testing.T) {
	t.Parallel()
	s := stacktest.ClickHouse(t)
	if again := stacktest.ClickHouse(t); again != s {
		t.Fatal("ClickHouse started a second server")
	}
	resp, err := http.Get("http://" + s.HTTPAddr + "/?query=" + url.QueryEscape("SELECT 40+2"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if strings.TrimSpace(string(body)) != "42" {
		t.Fatalf("SELECT 40+2 = %q (%s)", body, resp.Status)
	}
}

// recordingTB captures what StartProcess reports instead of failing the test.
type recordingTB struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}
func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestProcessDataRaceFails(t *testing.T) {
	t.Parallel()
	if !stacktest.RaceEnabledForTest {
		t.Skip("needs -race: the child is built with -race only then")
	}
	bin := stacktest.Build(t, chatty)
	rec := &recordingTB{TB: t}
	p := stacktest.StartProcess(rec, "racy", bin, nil, "-race")
	p.WaitLine("hello from stdout", 10*time.Second)
	rec.runCleanups()
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "data race") {
		t.Fatalf("errors reported: %q, want one about a data race", rec.errors)
	}
}

func TestClickHouseDatabase(t *testing.T) {
	t.Parallel()
	var srv1 string
	var db1 string
	t.Run("first", func(t *testing.T) {
		srv, db := stacktest.ClickHouseDatabase(t)
		srv1, db1 = srv.HTTPAddr, db
		if got := query(t, srv.HTTPAddr, "SELECT count() FROM system.databases WHERE name = '"+db+"'"); got != "1" {
			t.Fatalf("database %s not created: %q", db, got)
		}
		query(t, srv.HTTPAddr, "CREATE TABLE "+db+".x (a UInt8) ENGINE = MergeTree ORDER BY a")
	})
	_, db2 := stacktest.ClickHouseDatabase(t)
	if db2 == db1 {
		t.Fatalf("two tests got database %s", db1)
	}
	if got := query(t, srv1, "SELECT count() FROM system.databases WHERE name = '"+db1+"'"); got != "0" {
		t.Fatalf("database %s not dropped after its test: %q", db1, got)
	}
}

func query(t *testing.T, httpAddr, q string) string {
	t.Helper()
	resp, err := http.Post("http://"+httpAddr+"/", "text/plain", strings.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", q, resp.Status, body)
	}
	return strings.TrimSpace(string(body))
}
