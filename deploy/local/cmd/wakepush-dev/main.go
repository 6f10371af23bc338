// Command wakepush-dev is the `make run` supervisor: it builds and starts the
// local dev stack (components.go), one child process per component, each
// after the previous one is ready, and stops them in reverse order on Ctrl-C
// or SIGTERM (SIGTERM, 15 s, SIGKILL).
//
//	wakepush-dev [-root DIR] [-data DIR] [-only kafka,clickhouse] [-port-offset N] [-traces auto|wait|off]
//
// Every child's output appears on stdout as "[name] line"; the supervisor's
// own lines start with "[dev]". Children run in the repository root (found
// by walking up to go.work), so relative paths in deploy/local/apps.yaml
// resolve there. All state lives in -data (default <root>/.data): Kafka and
// ClickHouse data, the dev APNs key and the mock's CA, and the binaries
// (<data>/bin), built first with one `go build`.
//
// Environment: each child gets the stack defaults (components.go), then the
// supervisor's own environment, which overrides them, then its per-process
// WAKEPUSH_ADMIN_ADDR. If a child exits on its own, the supervisor says so,
// stops the others and exits 1.
//
// Traces (traces.go): Jaeger starts first when its pinned binary is in the
// user cache, and the services export their spans to it. When it is not,
// -traces=auto (the default, or WAKEPUSH_DEV_TRACES) starts the stack without
// traces at once and builds Jaeger in the background for the next run;
// -traces=wait builds it first; -traces=off leaves it out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/deploy/local/childproc"
)

func main() {
	out := &prefixer{w: os.Stdout}
	if err := run(os.Args[1:], out); err != nil {
		out.line("dev", "ERROR: "+err.Error())
		os.Exit(1)
	}
}

type options struct {
	root       string
	data       string
	only       []string
	portOffset int
	traces     string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("wakepush-dev", flag.ContinueOnError)
	fs.StringVar(&o.root, "root", "", "repository root (default: the nearest directory above the current one holding go.work)")
	fs.StringVar(&o.data, "data", "", "state directory (default: <root>/.data)")
	only := fs.String("only", "", "comma-separated components to start (default all): "+strings.Join(componentNames(), ","))
	defTraces := os.Getenv("WAKEPUSH_DEV_TRACES")
	if defTraces == "" {
		defTraces = tracesAuto
	}
	fs.StringVar(&o.traces, "traces", defTraces, "Jaeger: auto (start it when built, else build it in the background for the next run), wait (build it first), off (env WAKEPUSH_DEV_TRACES)")
	fs.IntVar(&o.portOffset, "port-offset", 0, "add this to every port of the stack (to run a second stack; deploy/local/apps.yaml still names the default APNs mock address)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if !slices.Contains([]string{tracesAuto, tracesWait, tracesOff}, o.traces) {
		return o, fmt.Errorf("-traces: %q is not auto, wait or off", o.traces)
	}
	if *only != "" {
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			if n == "" {
				continue
			}
			if !slices.Contains(componentNames(), n) {
				return o, fmt.Errorf("-only: unknown component %q (known: %s)", n, strings.Join(componentNames(), ", "))
			}
			o.only = append(o.only, n)
		}
	}
	for name, p := range ports {
		if p+o.portOffset <= 0 || p+o.portOffset > 65535 {
			return o, fmt.Errorf("-port-offset %d puts %s outside 1-65535", o.portOffset, name)
		}
	}
	return o, nil
}

func componentNames() []string {
	var names []string
	for _, c := range components {
		names = append(names, c.name)
	}
	return names
}

// selectComponents keeps the components named in only (all when empty), in
// table order.
func selectComponents(only []string) []component {
	if len(only) == 0 {
		return components
	}
	var cs []component
	for _, c := range components {
		if slices.Contains(only, c.name) {
			cs = append(cs, c)
		}
	}
	return cs
}

// findRoot walks up from dir to the directory holding go.work.
func findRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.work in %s or above: run from the repository or pass -root", dir)
		}
	}
}

func run(args []string, out *prefixer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if o.root, err = findRoot(wd); err != nil {
			return err
		}
	}
	if o.root, err = filepath.Abs(o.root); err != nil {
		return err
	}
	if o.data == "" {
		o.data = filepath.Join(o.root, ".data")
	}
	if o.data, err = filepath.Abs(o.data); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	s := &stack{opts: o, out: out, vars: map[string]string{}, exits: make(chan *child, len(components)), unnotify: stop}
	return s.run(ctx, selectComponents(o.only))
}

// stack is a running dev stack.
type stack struct {
	opts    options
	out     *prefixer
	vars    map[string]string // extra placeholders, e.g. chdb-lib
	started []*child
	exits   chan *child // children that exited without being stopped
	// traces is set when Jaeger is part of the stack: the traced components export to it.
	traces bool
	// builds tracks the background Jaeger build.
	builds sync.WaitGroup
	// unnotify restores the default signal handling: a second Ctrl-C
	// during the orderly stop ends the supervisor at once (the children
	// then get SIGTERM through Pdeathsig).
	unnotify func()
}

func (s *stack) logf(format string, args ...any) { s.out.line("dev", fmt.Sprintf(format, args...)) }

func (s *stack) run(ctx context.Context, cs []component) error {
	s.logf("root %s, data %s", s.opts.root, s.opts.data)
	// A background Jaeger build ends with ctx (Ctrl-C) or with the stack.
	ctx, cancelBuilds := context.WithCancel(ctx)
	defer s.builds.Wait()
	defer cancelBuilds()
	cs, err := s.planTraces(ctx, cs)
	if err != nil {
		return err
	}
	bins, err := s.build(ctx, cs)
	if err != nil {
		return err
	}
	if err := s.startAll(ctx, cs, bins); err != nil {
		s.unnotify()
		s.stopAll()
		return err
	}
	s.logf("all %d components ready: %s; Ctrl-C stops the stack", len(cs), strings.Join(names(cs), ", "))
	if line := s.tracesSummary(); line != "" {
		s.logf("%s", line)
	}
	select {
	case <-ctx.Done():
		s.unnotify()
		s.logf("stopping the stack (Ctrl-C again to quit without waiting)")
		s.stopAll()
		s.logf("stopped")
		return nil
	case c := <-s.exits:
		s.unnotify()
		s.logf("!!!!!!!! %s EXITED UNEXPECTEDLY (%s): stopping the stack !!!!!!!!", c.name, exitStatus(c.err))
		s.stopAll()
		return fmt.Errorf("%s exited unexpectedly: %s", c.name, exitStatus(c.err))
	}
}

func names(cs []component) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.name)
	}
	return n
}

// build builds every component's binary with one go build into <data>/bin.
func (s *stack) build(ctx context.Context, cs []component) (map[string]string, error) {
	binDir := filepath.Join(s.opts.data, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-o", binDir + string(filepath.Separator)}
	bins := map[string]string{}
	built := 0
	for _, c := range cs {
		if c.bin != "" {
			bins[c.name] = s.expand(c.bin)
			continue
		}
		args = append(args, c.pkg)
		bins[c.name] = filepath.Join(binDir, path.Base(c.pkg))
		built++
	}
	if built == 0 {
		return bins, nil
	}
	s.logf("go %s", strings.Join(args, " "))
	began := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = s.opts.root
	w := s.out.writer("build")
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	w.Flush()
	if err != nil {
		if ctx.Err() != nil {
			return nil, errors.New("interrupted during the build")
		}
		return nil, fmt.Errorf("go build: %w (a component that does not build yet can be left out with -only)", err)
	}
	s.logf("built %d binaries in %s", built, time.Since(began).Round(time.Millisecond))
	return bins, nil
}

func (s *stack) startAll(ctx context.Context, cs []component, bins map[string]string) error {
	for _, c := range cs {
		if c.prepare != nil {
			if err := c.prepare(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		began := time.Now()
		ch, err := s.start(c, bins[c.name])
		if err != nil {
			return err
		}
		if err := s.waitReady(ctx, ch); err != nil {
			return err
		}
		s.logf("%s ready in %s (%s)", c.name, time.Since(began).Round(time.Millisecond), s.expand(c.ready))
	}
	return nil
}

// expand replaces the placeholders of the component table.
func (s *stack) expand(v string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(v, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '}')
		if j < 0 {
			break
		}
		b.WriteString(v[:i])
		key := v[i+1 : i+j]
		b.WriteString(s.lookup(key, v[i:i+j+1]))
		v = v[i+j+1:]
	}
	b.WriteString(v)
	return b.String()
}

func (s *stack) lookup(key, literal string) string {
	if kind, name, ok := strings.Cut(key, ":"); ok {
		p, known := ports[name]
		if !known {
			panic(fmt.Sprintf("components.go: unknown port name in %s", literal))
		}
		switch kind {
		case "addr":
			return fmt.Sprintf("127.0.0.1:%d", p+s.opts.portOffset)
		case "port":
			return fmt.Sprint(p + s.opts.portOffset)
		}
	}
	switch key {
	case "data":
		return s.opts.data
	case "root":
		return s.opts.root
	}
	if v, ok := s.vars[key]; ok {
		return v
	}
	panic(fmt.Sprintf("components.go: unknown placeholder %s", literal))
}

func (s *stack) expandAll(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = s.expand(v)
	}
	return out
}

// environ is the child's environment: stack defaults, its own defaults, the
// supervisor's environment (overrides), its pinned settings. os/exec uses
// the last value of a repeated variable.
func (s *stack) environ(c component, parent []string) []string {
	env := s.expandAll(stackEnv)
	if s.traces && c.traced {
		env = append(env, s.expandAll(traceEnv)...)
	}
	env = append(env, s.expandAll(c.env)...)
	env = append(env, parent...)
	return append(env, s.expandAll(c.pinned)...)
}

// child is a started component.
type child struct {
	component
	proc *childproc.Process
	out  *lineWriter
	done chan struct{} // closed once the process has exited and its output is flushed
	err  error         // how it ended (childproc.Process.Err), set before done is closed
}

func (s *stack) start(c component, bin string) (*child, error) {
	args := s.expandAll(c.args)
	ch := &child{component: c, done: make(chan struct{}), out: s.out.writer(c.name)}
	// stop: SIGTERM, stopTimeout, SIGKILL to the child's process group.
	ch.proc = childproc.Command(stopTimeout, bin, args...)
	ch.proc.Cmd.Dir = s.opts.root
	ch.proc.Cmd.Env = s.environ(c, os.Environ())
	ch.proc.Cmd.Stdout, ch.proc.Cmd.Stderr = ch.out, ch.out
	// Own process group: a terminal's Ctrl-C reaches only the supervisor,
	// which then stops the children in order. Pdeathsig: a killed supervisor
	// takes its children along.
	ch.proc.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := ch.proc.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.name, err)
	}
	s.logf("%s started (pid %d): %s %s", c.name, ch.proc.Pid(), filepath.Base(bin), strings.Join(args, " "))
	s.started = append(s.started, ch)
	go func() {
		<-ch.proc.Done()
		ch.err = ch.proc.Err()
		ch.out.Flush()
		stopping := ch.proc.Stopping()
		close(ch.done)
		if !stopping {
			s.exits <- ch
		}
	}()
	return ch, nil
}

// waitReady polls the component's readiness check until it passes, the
// timeout expires, the stack is interrupted or a child exits.
func (s *stack) waitReady(ctx context.Context, ch *child) error {
	timeout := ch.timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	deadline := time.After(timeout)
	url := s.expand(ch.ready)
	ca := s.expand(ch.readyCA)
	var last error
	for {
		if last = checkReady(ctx, url, ca); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for %s", ch.name)
		case c := <-s.exits:
			return fmt.Errorf("%s exited (%s) while starting %s", c.name, exitStatus(c.err), ch.name)
		case <-deadline:
			return fmt.Errorf("%s not ready after %s: %v", ch.name, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopAll stops the started children in reverse order.
func (s *stack) stopAll() {
	for i := len(s.started) - 1; i >= 0; i-- {
		s.stop(s.started[i])
	}
	s.started = nil
}

const stopTimeout = 15 * time.Second

func (s *stack) stop(ch *child) {
	select {
	case <-ch.done:
		return // already gone, reported
	default:
	}
	s.logf("stopping %s", ch.name)
	err := ch.proc.Stop()
	select {
	case <-ch.proc.Done():
	default:
		s.logf("%s: %v", ch.name, err) // not even SIGKILL ended it
		return
	}
	<-ch.done
	if ch.proc.Killed() {
		s.logf("%s still running %s after SIGTERM: killed it", ch.name, stopTimeout)
	}
	s.logf("%s stopped (%s)", ch.name, exitStatus(ch.err))
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// prefixer writes whole lines "[name] text" to w, one at a time.
type prefixer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *prefixer) line(name, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%s] %s\n", name, text)
}

func (p *prefixer) writer(name string) *lineWriter { return &lineWriter{p: p, name: name} }

// lineWriter splits a child's output into lines for the prefixer.
type lineWriter struct {
	p    *prefixer
	name string
	mu   sync.Mutex
	buf  []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := slices.Index(w.buf, '\n')
		if i < 0 {
			break
		}
		w.p.line(w.name, strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes a last unterminated line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.p.line(w.name, string(w.buf))
		w.buf = nil
	}
}
