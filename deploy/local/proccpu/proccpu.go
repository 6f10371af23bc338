// Package proccpu reads the CPU time a process has used from /proc/<pid>/stat (Linux), so that
// the load tools can charge each process of a run its own CPU: the services, the broker, the
// provider mocks and the tool itself.
package proccpu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// UserHZ is Linux's USER_HZ, the unit of /proc/<pid>/stat CPU times (100 on every architecture
// Go supports). A reading is truncated to a tick (10 ms), so a difference of two readings is off
// by up to two ticks.
const UserHZ = 100

// Read returns the user + system CPU time the process pid has used so far (every thread,
// not its children).
func Read(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / UserHZ, nil
}

// Self is Read of the calling process.
func Self() (time.Duration, error) { return Read(os.Getpid()) }

// Machine returns the CPU time every CPU of the machine has spent busy so far (the first line of
// /proc/stat: user, nice, system, irq, softirq and steal; guest time is part of user), i.e. all
// processes together, ours and everybody else's.
func Machine() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("machine cpu time: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system [idle iowait] irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d %q", i, f[i])
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / UserHZ, nil
}
