package proccpu

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadGrowsWithWork: Read agrees with the kernel's own account of this process's CPU time
// (getrusage) across a stretch of spinning. The spin lasts until the process has used cpuWork
// of CPU, not a wall time, so busy cores only make it take longer.
func TestReadGrowsWithWork(t *testing.T) {
	const (
		cpuWork = 200 * time.Millisecond
		// Each of /proc's utime and stime is truncated to a tick: a difference of two
		// readings is off by up to two ticks either way.
		slack = 2 * time.Second / UserHZ
	)
	outerBefore := rusageCPU(t)
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	innerBefore := rusageCPU(t)
	var innerAfter time.Duration
	x := 0
	for deadline := time.Now().Add(2 * time.Minute); ; {
		for range 1 << 16 {
			x++
		}
		if innerAfter = rusageCPU(t); innerAfter-innerBefore >= cpuWork {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process got only %s of CPU in 2 min of spinning (x=%d)", innerAfter-innerBefore, x)
		}
	}
	after, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	outerAfter := rusageCPU(t)
	// /proc's readings lie between the inner and the outer getrusage readings.
	got, lo, hi := after-before, innerAfter-innerBefore-slack, outerAfter-outerBefore+slack
	if got < lo || got > hi {
		t.Fatalf("Read grew by %s while getrusage says between %s and %s (x=%d)", got, lo+slack, hi-slack, x)
	}
	if _, err := Read(-1); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

// rusageCPU is this process's user + system CPU time by getrusage(2).
func rusageCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestMachine(t *testing.T) {
	a, err := Machine()
	if err != nil {
		t.Fatal(err)
	}
	self, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	// The machine's busy time includes this process's.
	if a <= 0 || a < self-2*time.Second/UserHZ {
		t.Errorf("machine busy %s, this process %s", a, self)
	}
	b, err := Machine()
	if err != nil || b < a {
		t.Errorf("machine busy went from %s to %s (%v)", a, b, err)
	}
}
