// Package childproc runs a child process that is stopped gracefully: Stop sends SIGTERM and,
// when the process has not exited within a grace period, SIGKILL. It is os/exec's Cmd.Cancel
// (SIGTERM) and Cmd.WaitDelay (then SIGKILL, and the output pipes closed) behind a Start and a
// Stop.
//
// A process started in its own process group (SysProcAttr.Setpgid with Pgid 0) that had to be
// killed has the rest of its group killed as well, so that a grandchild that also ignored
// SIGTERM does not outlive it.
package childproc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// killWait bounds the wait for the process to exit after SIGKILL (a process stuck in the
// kernel cannot be waited for forever).
const killWait = 10 * time.Second

// Process is a child process. Set up Cmd, then Start it; Stop ends it.
type Process struct {
	// Cmd is the command. Set its Dir, Env, Stdout, Stderr, SysProcAttr … before Start; leave
	// Cancel and WaitDelay as Command set them and do not call Cmd.Start or Cmd.Wait.
	Cmd *exec.Cmd

	grace    time.Duration
	cancel   context.CancelFunc
	stopping atomic.Bool
	start    sync.Once
	done     chan struct{} // closed once the process has exited or Start failed
	err      error         // set before done is closed
	killed   bool          // set before done is closed
}

// Command returns a Process for name and args (looked up like exec.Command does) that Stop
// ends with SIGTERM and, grace later, SIGKILL. grace must be positive.
func Command(grace time.Duration, name string, args ...string) *Process {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{grace: grace, cancel: cancel, done: make(chan struct{})}
	p.Cmd = exec.CommandContext(ctx, name, args...)
	p.Cmd.Cancel = func() error { return p.Cmd.Process.Signal(syscall.SIGTERM) }
	p.Cmd.WaitDelay = grace
	return p
}

// Start starts the process and waits for it in the background (Done, Err). The error is
// exec.Cmd.Start's, unwrapped; after a failed Start, Done is closed and Stop returns at once.
func (p *Process) Start() error {
	err := errors.New("childproc: Start called twice")
	p.start.Do(func() {
		if p.grace <= 0 {
			err = fmt.Errorf("childproc: grace period %s is not positive", p.grace)
		} else {
			err = p.Cmd.Start()
		}
		if err != nil {
			p.cancel()
			p.err = err
			close(p.done)
			return
		}
		go p.wait()
	})
	return err
}

func (p *Process) wait() {
	err := p.Cmd.Wait()
	if st := p.Cmd.ProcessState; st != nil && p.stopping.Load() {
		// After Stop, os/exec reports a clean exit as the context's error: it is a clean exit.
		if st.Success() {
			err = nil
		}
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			p.killed = true
			if a := p.Cmd.SysProcAttr; a != nil && a.Setpgid && a.Pgid == 0 {
				// The leader is gone; what is left of its group dies with it. ESRCH (nothing
				// left) is the usual answer.
				_ = syscall.Kill(-st.Pid(), syscall.SIGKILL)
			}
		}
	}
	p.cancel()
	p.err = err
	close(p.done)
}

// Stop sends SIGTERM, then SIGKILL if the process is still running after the grace period,
// and waits for it to exit. It returns Err, or an error if the process has not exited 10 s
// after SIGKILL. It sends nothing to a process that has already exited, and is safe to call
// more than once and concurrently, after Start.
func (p *Process) Stop() error {
	if p.Cmd.Process == nil && p.Err() == nil {
		return errors.New("childproc: Stop before Start")
	}
	p.stopping.Store(true)
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(p.grace + killWait):
		return fmt.Errorf("childproc: %s (pid %d) still running %s after SIGKILL", p.Cmd.Path, p.Cmd.Process.Pid, killWait)
	}
}

// Done is closed once the process has exited and its output has been copied (or Start
// failed).
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process ended, once Done is closed: nil for exit status 0 (also when it
// exited so after Stop), else exec.Cmd.Wait's error (an *exec.ExitError for an exit status or
// a signal). Before Done is closed it returns nil.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Killed reports, once Done is closed, whether the process ended by SIGKILL after Stop: it
// had not exited within the grace period after SIGTERM.
func (p *Process) Killed() bool {
	select {
	case <-p.done:
		return p.killed
	default:
		return false
	}
}

// Stopping reports whether Stop has been called.
func (p *Process) Stopping() bool { return p.stopping.Load() }

// Pid returns the process id, or 0 if the process was not started.
func (p *Process) Pid() int {
	if p.Cmd.Process == nil {
		return 0
	}
	return p.Cmd.Process.Pid
}
