package childproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv selects what the test binary does when it runs as a child (TestMain).
const helperEnv = "CHILDPROC_TEST_HELPER"

func TestMain(m *testing.M) {
	switch mode := os.Getenv(helperEnv); mode {
	case "":
		os.Exit(m.Run())
	case "exit3":
		fmt.Println("ready")
		os.Exit(3)
	case "term":
		// Exits with status 0 on SIGTERM.
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("ready")
		<-c
		fmt.Println("got SIGTERM")
		os.Exit(0)
	case "ignore", "ignore-group":
		signal.Ignore(syscall.SIGTERM)
		if mode == "ignore-group" {
			// A grandchild in the same process group that ignores SIGTERM too.
			gc := exec.Command(os.Args[0])
			gc.Env = append(os.Environ(), helperEnv+"=ignore")
			gc.Stdout = os.Stdout
			if err := gc.Start(); err != nil {
				fmt.Println("start grandchild:", err)
				os.Exit(1)
			}
			fmt.Println("grandchild", gc.Process.Pid)
		}
		fmt.Println("ready")
		time.Sleep(time.Hour)
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
}

// output collects the child's output and tells when it holds n lines "ready".
type output struct {
	mu    sync.Mutex
	b     bytes.Buffer
	ready chan struct{}
	want  int
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Write(b)
	if o.want > 0 && strings.Count(o.b.String(), "ready\n") >= o.want {
		o.want = 0
		close(o.ready)
	}
	return len(b), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

func helper(t *testing.T, mode string, grace time.Duration, group bool) (*Process, *output) {
	t.Helper()
	p := Command(grace, os.Args[0])
	// A -race child would sleep 1 s before exiting.
	p.Cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GORACE=atexit_sleep_ms=0")
	want := 1
	if mode == "ignore-group" {
		want = 2
	}
	out := &output{ready: make(chan struct{}), want: want}
	p.Cmd.Stdout, p.Cmd.Stderr = out, out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: group, Pdeathsig: syscall.SIGKILL}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	select {
	case <-out.ready:
	case <-p.Done():
		if mode != "exit3" {
			t.Fatalf("child exited before it was ready (%v): %s", p.Err(), out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("child not ready within a minute: %s", out)
	}
	return p, out
}

func TestStop(t *testing.T) {
	for _, c := range []struct {
		name       string
		mode       string
		grace      time.Duration
		group      bool
		exitedYet  bool   // wait for the child to exit by itself before Stop
		wantStatus string // Stop's error, "" for nil
		wantKilled bool
		wantOutput string
	}{
		// A generous grace: the child must not be killed however busy the machine is.
		{name: "exits on SIGTERM", mode: "term", grace: time.Minute, wantOutput: "got SIGTERM"},
		{name: "ignores SIGTERM", mode: "ignore", grace: 300 * time.Millisecond, wantStatus: "signal: killed", wantKilled: true},
		{name: "ignores SIGTERM, own group", mode: "ignore-group", grace: 300 * time.Millisecond, group: true, wantStatus: "signal: killed", wantKilled: true},
		{name: "already exited", mode: "exit3", grace: time.Minute, exitedYet: true, wantStatus: "exit status 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, out := helper(t, c.mode, c.grace, c.group)
			if c.exitedYet {
				<-p.Done()
			}
			began := time.Now()
			err := p.Stop()
			took := time.Since(began)
			if got := errString(err); got != c.wantStatus {
				t.Errorf("Stop() = %q, want %q; output:\n%s", got, c.wantStatus, out)
			}
			if p.Err() != err {
				t.Errorf("Err() = %v, Stop returned %v", p.Err(), err)
			}
			if p.Killed() != c.wantKilled {
				t.Errorf("Killed() = %t, want %t", p.Killed(), c.wantKilled)
			}
			if c.wantKilled && took < c.grace {
				t.Errorf("killed %s after SIGTERM, before the %s grace period", took, c.grace)
			}
			if !c.wantKilled && took >= c.grace {
				t.Errorf("Stop took %s, the whole grace period", took)
			}
			if !strings.Contains(out.String(), c.wantOutput) {
				t.Errorf("output lacks %q:\n%s", c.wantOutput, out)
			}
			if c.mode == "ignore-group" {
				var gc int
				for _, l := range strings.Split(out.String(), "\n") {
					if v, ok := strings.CutPrefix(l, "grandchild "); ok {
						gc, _ = strconv.Atoi(v)
					}
				}
				if gc == 0 {
					t.Fatalf("no grandchild pid in the output:\n%s", out)
				}
				waitGone(t, gc)
			}
			if err2 := p.Stop(); err2 != err {
				t.Errorf("second Stop() = %v, first %v", err2, err)
			}
		})
	}
}

func TestStartFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		bin   string
		grace time.Duration
		want  string
	}{
		{"no such binary", "/nonexistent/childproc-test", time.Second, "no such file"},
		{"no grace period", os.Args[0], 0, "not positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := Command(c.grace, c.bin)
			err := p.Start()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Start() = %v, want an error containing %q", err, c.want)
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("Done not closed after a failed Start")
			}
			if err := p.Stop(); err == nil {
				t.Error("Stop after a failed Start returned nil")
			}
			if p.Pid() != 0 {
				t.Errorf("Pid() = %d for a process that did not start", p.Pid())
			}
		})
	}
	if err := Command(time.Second, os.Args[0]).Stop(); err == nil {
		t.Error("Stop before Start returned nil")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return "not an exit error: " + err.Error()
	}
	return err.Error()
}

// waitGone waits until pid no longer runs: gone, or a zombie nobody reaps (the grandchild's
// new parent may be an init that does not).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && bytes.HasPrefix(b[i+1:], []byte(" Z")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still running: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
