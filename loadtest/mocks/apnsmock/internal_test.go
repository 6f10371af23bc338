package apnsmock

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPushStoreRing(t *testing.T) {
	s := newPushStore(3)
	for i := 0; i < 5; i++ {
		s.add(Push{ApnsID: string(rune('a' + i)), Token: map[bool]string{true: "even", false: "odd"}[i%2 == 0]})
	}
	var ids []string
	for _, p := range s.all("") {
		ids = append(ids, p.ApnsID)
	}
	if got := strings.Join(ids, ""); got != "cde" {
		t.Errorf("ring order = %q, want cde", got)
	}
	if n := len(s.all("even")); n != 2 {
		t.Errorf("filtered = %d, want 2", n)
	}
	if s.accepted() != 5 || s.len() != 3 {
		t.Errorf("accepted %d len %d", s.accepted(), s.len())
	}
	off := newPushStore(-1)
	off.add(Push{})
	if off.len() != 0 || off.accepted() != 1 {
		t.Error("MaxRecords < 0 must record nothing but count")
	}
}

func TestValidators(t *testing.T) {
	for _, tt := range []struct {
		in   string
		uuid bool
		tok  bool
	}{
		{"123e4567-e89b-12d3-a456-426614174000", true, false},
		{"123E4567-E89B-12D3-A456-426614174000", true, false},
		{"123e4567e89b12d3a456426614174000", false, true},
		{"123e4567-e89b-12d3-a456-42661417400g", false, false},
		{"{123e4567-e89b-12d3-a456-426614174000}", false, false},
		{strings.Repeat("ab", 100), false, true},
		{strings.Repeat("ab", 101), false, false},
		{"", false, false},
	} {
		if got := validUUID(tt.in); got != tt.uuid {
			t.Errorf("validUUID(%q) = %v", tt.in, got)
		}
		if got := validDeviceToken(tt.in); got != tt.tok {
			t.Errorf("validDeviceToken(%q) = %v", tt.in, got)
		}
	}
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		u := newUUID()
		if !validUUID(u) || strings.ToLower(u) != u || u[14] != '4' || seen[u] {
			t.Fatalf("newUUID() = %q", u)
		}
		seen[u] = true
	}
	for _, tt := range []struct {
		in   string
		want bool
	}{{`{}`, true}, {` {"a":1}`, true}, {`[]`, false}, {`{`, false}, {`"x"`, false}, {``, false}} {
		if got := jsonObject([]byte(tt.in)); got != tt.want {
			t.Errorf("jsonObject(%q) = %v", tt.in, got)
		}
	}
}

func TestDeviceLimiterSweep(t *testing.T) {
	l := newDeviceLimiter()
	l.sweepMin = 8
	now := time.Now()
	const n = 64 * 8 * 4
	for i := 0; i < n; i++ {
		l.allow(fmt.Sprintf("old-%d", i), now, 1, time.Second)
	}
	later := now.Add(2 * time.Second)
	for i := 0; i < n; i++ {
		l.allow(fmt.Sprintf("new-%d", i), later, 1, time.Second)
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total >= 2*n {
		t.Errorf("limiter holds %d windows; expired ones were not swept", total)
	}
	if !l.allow("z", later, 1, time.Second) || l.allow("z", later, 1, time.Second) {
		t.Error("limit 1 not enforced")
	}
	l.reset()
	if !l.allow("z", later, 1, time.Second) {
		t.Error("reset kept state")
	}
}
