// Package freeport hands out loopback TCP ports for child processes that
// must be told their listen address before they start (test stacks, the load
// test's stack).
//
// The usual trick, listening on port 0 and closing, returns a port from the
// kernel's ephemeral range. Between closing it and the child binding it, any
// outgoing connection on the machine (a Kafka client, an HTTP probe) may be
// given that same port as its source port, and the child then fails with
// "address already in use". Ports handed out here come from below the
// ephemeral range instead, are checked to be bindable, and are never handed
// out twice by one process. Separate processes (parallel test binaries) start
// at different random offsets, so a collision between them needs two picks of
// the same port within the moment between check and bind.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the first port considered: well above the registered ports most
// local daemons use.
const lowest = 20000

// defaultEphemeralLow is Linux's default start of the ephemeral range, used
// when the running kernel's range cannot be read.
const defaultEphemeralLow = 32768

var (
	mu     sync.Mutex
	given  = map[int]bool{}
	next   int
	lo, hi int
)

// Port returns a TCP port on 127.0.0.1 that was bindable a moment ago, lies
// outside the kernel's ephemeral port range and has not been returned before
// by this process.
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if hi == 0 {
		lo, hi = lowest, ephemeralLow()
		if hi-lo < 1000 {
			// An unusual ephemeral range: fall back to asking the kernel.
			lo, hi = -1, -1
		} else {
			next = lo + rand.IntN(hi-lo)
		}
	}
	if lo < 0 {
		return kernelPort()
	}
	for range hi - lo {
		p := next
		next++
		if next >= hi {
			next = lo
		}
		if given[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		return p, nil
	}
	return 0, errors.New("freeport: no free port below the ephemeral range")
}

// Offset returns a shift for a stack whose ports are fixed relative to one
// another (the dev stack's -port-offset): every base+offset is at least
// 20000, lies below the kernel's ephemeral range, was bindable a moment ago
// and has not been handed out before by this process. The ports it covers
// are then never handed out by Port.
func Offset(bases []int) (int, error) {
	if len(bases) == 0 {
		return 0, errors.New("freeport: no ports to shift")
	}
	minB, maxB := bases[0], bases[0]
	for _, b := range bases {
		minB, maxB = min(minB, b), max(maxB, b)
	}
	mu.Lock()
	defer mu.Unlock()
	eph := ephemeralLow()
	first, last := lowest-minB, eph-1-maxB // offsets allowed
	if last < first {
		return 0, fmt.Errorf("freeport: ports %d-%d do not fit between %d and the ephemeral range at %d", minB, maxB, lowest, eph)
	}
	for range 200 {
		off := first + rand.IntN(last-first+1)
		if bindable(bases, off) {
			for _, b := range bases {
				given[b+off] = true
			}
			return off, nil
		}
	}
	return 0, errors.New("freeport: no offset leaves every port free")
}

func bindable(bases []int, off int) bool {
	var open []net.Listener
	defer func() {
		for _, l := range open {
			l.Close()
		}
	}()
	for _, b := range bases {
		if given[b+off] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b+off)))
		if err != nil {
			return false
		}
		open = append(open, l)
	}
	return true
}

// Addr returns "127.0.0.1:PORT" for a port from Port.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow reads the start of the kernel's ephemeral (local) port range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralLow
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemeralLow
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return defaultEphemeralLow
	}
	return n
}
