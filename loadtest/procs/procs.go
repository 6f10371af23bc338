// Package procs runs the child processes of the load tools (loadtest's runner, sender-bench):
// it builds main packages with `go build` inside the workspace, starts binaries with their
// output in a log file, waits for readiness, stops them, and runs the Kafka broker
// (deploy/local/cmd/kafka-broker) as a child process that can be frozen, killed and restarted.
package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/deploy/local/childproc"
)

// GoBuild builds the main package pkg with `go build`, run in root (the repository, so its
// go.work applies), into dir and returns the binary.
func GoBuild(root, dir string, race bool) func(pkg string) (string, error) {
	return func(pkg string) (string, error) {
		out := filepath.Join(dir, path.Base(pkg))
		args := []string{"build", "-o", out}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, pkg)...)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
		}
		return out, nil
	}
}

// RepoRoot walks up from dir to the directory holding go.work.
func RepoRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.work above %s: run inside the wakepush repository", dir)
		}
		d = parent
	}
}

// StopTimeout is how long Stop waits after SIGTERM before it kills a process.
const StopTimeout = 25 * time.Second

// Process is a binary run as a child with its output in a log file.
type Process struct {
	Name, Log string
	Bin       string   // what Restart runs again
	Env, Args []string // the environment added to ours, the arguments

	proc *childproc.Process
	done chan struct{} // closed once it has exited and its log file is closed
	err  error         // how it ended (childproc.Process.Err), set before done is closed
}

// Start runs bin with args and env (added to this process's environment), its stdout and
// stderr appended to logPath: a restarted process keeps one log.
func Start(name, bin, logPath string, env []string, args ...string) (*Process, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, Log: logPath, Bin: bin, Env: env, Args: args, done: make(chan struct{})}
	p.proc = childproc.Command(StopTimeout, bin, args...)
	p.proc.Cmd.Env = append(os.Environ(), env...)
	p.proc.Cmd.Stdout, p.proc.Cmd.Stderr = f, f
	if err := p.proc.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		<-p.proc.Done()
		p.err = p.proc.Err()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Restart starts the process again with the same binary, environment and arguments, after a
// "restarted at" line in its log. The old process must have exited.
func (p *Process) Restart(what string) (*Process, error) {
	if f, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		fmt.Fprintf(f, "\n=== %s: %s restarted at %s ===\n\n", what, p.Name, time.Now().UTC().Format(time.RFC3339Nano))
		f.Close()
	}
	return Start(p.Name, p.Bin, p.Log, p.Env, p.Args...)
}

// Pid is the process id.
func (p *Process) Pid() int { return p.proc.Pid() }

// Done is closed once the process has exited and its log is closed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil: exit status 0, also after Stop); valid once Done is closed.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(p.Pid(), sig)
}

// Kill SIGKILLs the process and waits until it is gone.
func (p *Process) Kill() error {
	if p.Exited() {
		return fmt.Errorf("%s had already exited: %v (log %s)", p.Name, p.err, p.Log)
	}
	if err := p.proc.Cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", p.Name, err)
	}
	<-p.done
	return nil
}

// WaitReady polls url until it answers 200, the process exits, ctx ends or timeout passes.
func (p *Process) WaitReady(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v); log: %s", p.Name, p.err, p.Log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s; log: %s", p.Name, url, timeout, p.Log)
		}
	}
}

// Stop sends SIGTERM, waits up to StopTimeout, then kills. It returns an error when the process
// had already exited by itself, had to be killed, or its log reports a data race.
func (p *Process) Stop() error {
	var errs []error
	select {
	case <-p.done:
		errs = append(errs, fmt.Errorf("%s exited during the run: %v (log %s)", p.Name, p.err, p.Log))
	default:
		err := p.proc.Stop()
		select {
		case <-p.proc.Done():
			<-p.done
			if p.proc.Killed() {
				errs = append(errs, fmt.Errorf("%s did not stop within %s of SIGTERM (killed)", p.Name, StopTimeout))
			}
		default:
			errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, err))
		}
	}
	if b, err := os.ReadFile(p.Log); err == nil && bytes.Contains(b, []byte("WARNING: DATA RACE")) {
		errs = append(errs, fmt.Errorf("%s: data race reported (log %s)", p.Name, p.Log))
	}
	return errors.Join(errs...)
}
