package stacktest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/childproc"
)

// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
const StopTimeout = 15 * time.Second

// Process is a binary started by StartProcess.
type Process struct {
	// Name prefixes the process's log lines.
	Name string

	t    testing.TB
	proc *childproc.Process
	done chan struct{} // closed once the process has exited and its last line is kept
	err  error         // the process's exit (childproc.Process.Err), set before done is closed

	stopping atomic.Bool

	mu      sync.Mutex
	quiet   bool // the test has finished: no more t.Log
	lines   []string
	partial []byte
	changed chan struct{} // closed and replaced when a line arrives

	stopOnce sync.Once
	stopErr  error
}

// StartProcess runs bin with args. env entries ("K=V") are added to the test
// process's environment, overriding variables of the same name. Each line the
// process writes to stdout or stderr goes to t.Log as "[name] line" while the
// test runs, and is kept for Lines and WaitLine. The process is stopped
// (Stop) when the test ends; a process that exits by itself before that is
// reported in the log, and a data race reported by a -race binary fails the
// test. When the test binary is built with -race and GORACE is not set,
// GORACE=atexit_sleep_ms=10 spares every exit the race runtime's default 1 s
// sleep.
func StartProcess(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, t: t, done: make(chan struct{}), changed: make(chan struct{})}
	// Stop: SIGTERM, StopTimeout, SIGKILL. StopTimeout also bounds how long a grandchild
	// holding the output pipe can delay Done after the process exited.
	p.proc = childproc.Command(StopTimeout, bin, args...)
	p.proc.Cmd.Env = append(os.Environ(), env...)
	if raceEnabled && !hasVar(p.proc.Cmd.Env, "GORACE") {
		// A -race binary sleeps 1 s before exiting by default.
		p.proc.Cmd.Env = append(p.proc.Cmd.Env, "GORACE=atexit_sleep_ms=10")
	}
	p.proc.Cmd.Stdout = p // one writer for both: exec shares one pipe, order kept
	p.proc.Cmd.Stderr = p
	// If the test binary dies (panic, timeout), take the process with it.
	p.proc.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.proc.Start(); err != nil {
		t.Fatalf("stacktest: start %s (%s): %v", name, bin, err)
	}
	go func() {
		<-p.proc.Done()
		p.mu.Lock()
		p.flushLocked()
		p.mu.Unlock()
		p.err = p.proc.Err()
		unexpected := !p.stopping.Load()
		close(p.done)
		if unexpected {
			p.logf("[%s] exited by itself: %v", name, exitStatus(p.err))
		}
	}()
	t.Cleanup(func() {
		stopped := !p.exited()
		if err := p.Stop(); stopped && err != nil && !isSignalExit(err) {
			p.logf("[%s] stopped: %v", name, exitStatus(err))
		}
		p.mu.Lock()
		p.quiet = true
		race := slices.ContainsFunc(p.lines, func(l string) bool { return strings.Contains(l, "WARNING: DATA RACE") })
		p.mu.Unlock()
		if race {
			t.Errorf("stacktest: %s reported a data race (see its log above)", name)
		}
	})
	return p
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func hasVar(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// Write implements io.Writer for the process's output.
func (p *Process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		p.addLineLocked(string(bytes.TrimRight(p.partial[:i], "\r")))
		p.partial = p.partial[i+1:]
	}
	return len(b), nil
}

func (p *Process) flushLocked() {
	if len(p.partial) > 0 {
		p.addLineLocked(string(p.partial))
		p.partial = nil
	}
}

func (p *Process) addLineLocked(line string) {
	p.lines = append(p.lines, line)
	close(p.changed)
	p.changed = make(chan struct{})
	if !p.quiet {
		p.t.Logf("[%s] %s", p.Name, line)
	}
}

func (p *Process) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.quiet {
		p.t.Logf(format, args...)
	}
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.proc.Pid() }

// Lines returns the output lines so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Output returns the output so far, one line per line.
func (p *Process) Output() string {
	return strings.Join(p.Lines(), "\n")
}

// WaitLine waits until an output line contains substr and returns it. It
// fails the test on timeout or if the process exits first. Call it from the
// test goroutine.
func (p *Process) WaitLine(substr string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if strings.Contains(p.lines[seen], substr) {
				l := p.lines[seen]
				p.mu.Unlock()
				return l
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.done:
			// Output is complete once done is closed; look once more.
			p.mu.Lock()
			for ; seen < len(p.lines); seen++ {
				if strings.Contains(p.lines[seen], substr) {
					l := p.lines[seen]
					p.mu.Unlock()
					return l
				}
			}
			p.mu.Unlock()
			p.t.Fatalf("stacktest: %s exited (%v) before writing a line containing %q", p.Name, exitStatus(p.err), substr)
		case <-deadline:
			p.t.Fatalf("stacktest: %s wrote no line containing %q within %s", p.Name, substr, timeout)
		}
	}
}

// WaitHTTP polls url with GET until it answers 200 OK. It fails the test on
// timeout or if the process exits first. Call it from the test goroutine.
func (p *Process) WaitHTTP(url string, timeout time.Duration) {
	p.t.Helper()
	if err := p.waitHTTP(url, timeout); err != nil {
		p.t.Fatalf("stacktest: %s: %v", p.Name, err)
	}
}

func (p *Process) waitHTTP(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %q", resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited (%v) before GET %s answered 200 (last: %s)", exitStatus(p.err), url, last)
		case <-ctx.Done():
			return fmt.Errorf("GET %s did not answer 200 within %s (last: %s)", url, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	if sig == syscall.SIGTERM || sig == syscall.SIGINT || sig == syscall.SIGKILL {
		p.stopping.Store(true)
	}
	return p.proc.Cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	p.stopping.Store(true)
	_ = p.proc.Cmd.Process.Kill()
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit by itself and returns its
// exit error (nil for status 0). It fails the test on timeout.
func (p *Process) Wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("stacktest: %s still running after %s", p.Name, timeout)
		return nil
	}
}

// Stop sends SIGTERM, waits up to StopTimeout, then SIGKILLs, and returns the
// exit error (nil for status 0). Calling it again returns the same result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		p.stopping.Store(true)
		err := p.proc.Stop()
		select {
		case <-p.proc.Done():
		default:
			p.stopErr = err // not even SIGKILL ended it
			return
		}
		<-p.done
		if p.proc.Killed() {
			p.logf("[%s] still running %s after SIGTERM: killed", p.Name, StopTimeout)
		}
		p.stopErr = p.err
	})
	return p.stopErr
}

// ExitCode returns the exit code once the process has exited, -1 if a signal
// ended it or it is still running.
func (p *Process) ExitCode() int {
	select {
	case <-p.done:
		return p.proc.Cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func isSignalExit(err error) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}
