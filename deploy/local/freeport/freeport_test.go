package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortIsBindableUniqueAndBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if low-lowest >= 1000 && (p < lowest || p >= low) {
			t.Fatalf("port %d outside [%d, %d)", p, lowest, low)
		}
		mustBind(t, p)
	}
}

// mustBind fails the test unless port p on 127.0.0.1 can be listened on now.
func mustBind(t *testing.T, p int) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d not bindable: %v", p, err)
	}
	l.Close()
}

func TestPortSkipsPortsInUse(t *testing.T) {
	p, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	// Occupy the next candidate: Port must step over it.
	mu.Lock()
	cand := next
	mu.Unlock()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cand)))
	if err != nil {
		t.Skipf("candidate %d already taken: %v", cand, err)
	}
	defer l.Close()
	q, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	if q == cand || q == p {
		t.Fatalf("got port %d, want one other than the occupied %d and the earlier %d", q, cand, p)
	}
}

func TestAddr(t *testing.T) {
	a, err := Addr()
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(a)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", a)
	}
}

func TestOffset(t *testing.T) {
	low := ephemeralLow()
	bases := []int{19092, 19000, 18123, 18080}
	if low-lowest < 1200 {
		t.Skipf("ephemeral range starts at %d: no room below it", low)
	}
	seen := map[int]bool{}
	for range 20 {
		off, err := Offset(bases)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bases {
			p := b + off
			if p < lowest || p >= low {
				t.Fatalf("offset %d puts %d at %d, outside [%d, %d)", off, b, p, lowest, low)
			}
			if seen[p] {
				t.Fatalf("port %d covered twice", p)
			}
			seen[p] = true
			mustBind(t, p)
		}
	}
	// Port never hands out a port an offset covers.
	for range 200 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("Port returned %d, already covered by an offset", p)
		}
	}
}

func TestOffsetErrors(t *testing.T) {
	if _, err := Offset(nil); err == nil {
		t.Error("no ports: want an error")
	}
	if _, err := Offset([]int{1000, 40000}); err == nil {
		t.Error("ports too far apart to fit below the ephemeral range: want an error")
	}
}
