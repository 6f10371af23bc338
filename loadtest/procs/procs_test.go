package procs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProcess: the output goes to the log, Stop ends a running process cleanly, a process that
// exited by itself is reported by Stop and WaitReady, and Restart appends to the same log.
func TestProcess(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "p.log")
	p, err := Start("sleeper", "/bin/sh", log, []string{"PROCS_TEST=hello"}, "-c", `echo "$PROCS_TEST"; exec sleep 60`)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() <= 0 || p.Exited() {
		t.Fatalf("pid %d, exited %v", p.Pid(), p.Exited())
	}
	waitLog(t, log, 1)
	if err := p.Stop(); err != nil {
		t.Fatalf("stop a running process: %v", err)
	}
	if !p.Exited() {
		t.Fatal("not exited after Stop")
	}

	q, err := p.Restart("procs test")
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, 2)
	err = q.WaitReady(context.Background(), "http://127.0.0.1:1/readyz", 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("WaitReady on nothing listening: %v", err)
	}
	if err := q.Stop(); err != nil {
		t.Fatalf("stop the restarted process: %v", err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); strings.Count(got, "hello\n") != 2 || !strings.Contains(got, "=== procs test: sleeper restarted at ") {
		t.Fatalf("log:\n%s", got)
	}

	e, err := Start("quitter", "/bin/sh", filepath.Join(dir, "e.log"), nil, "-c", "exit 3")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.WaitReady(context.Background(), "http://127.0.0.1:1/readyz", time.Minute); err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("WaitReady of an exited process: %v", err)
	}
	if err := e.Stop(); err == nil || !strings.Contains(err.Error(), "exited during the run") {
		t.Fatalf("Stop of an exited process: %v", err)
	}
	if err := e.Kill(); err == nil {
		t.Fatal("Kill of an exited process: no error")
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatal(err)
	}
	if _, err := RepoRoot(t.TempDir()); err == nil {
		t.Fatal("a directory outside the repository has a root")
	}
}

// waitLog waits until the log holds n "hello" lines.
func waitLog(t *testing.T, log string, n int) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		b, _ := os.ReadFile(log)
		if strings.Count(string(b), "hello\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log after 1 min:\n%s", b)
		}
	}
}
