package sendermemory

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP wakepush_sender_registrations devices
# TYPE wakepush_sender_registrations gauge
wakepush_sender_registrations{otel_scope_name="sender",otel_scope_version="a b"} 83321
go_gc_heap_live_bytes 1.2345e+08
process_resident_memory_bytes{} 200 1700000000
x{a="1"} 2
x{a="2"} 3
`
	m := ParseMetrics([]byte(text))
	for name, want := range map[string]float64{
		"wakepush_sender_registrations": 83321, "go_gc_heap_live_bytes": 1.2345e8, "process_resident_memory_bytes": 200, "x": 5,
	} {
		if m[name] != want {
			t.Errorf("%s = %v, want %v", name, m[name], want)
		}
	}
}

func TestParseLog(t *testing.T) {
	log := `{"time":"2026-12-05T21:50:44.1Z","level":"INFO","msg":"joined consumer group","generation":1,"partitions":[0,1,2,3]}
not json
{"time":"2026-12-05T21:50:44.5Z","level":"INFO","msg":"registration table: partition loaded","partition":2,"devices":5000,"took":330000000}
{"time":"2026-12-05T21:50:45Z","level":"INFO","msg":"joined consumer group","generation":2,"partitions":[2,3]}
{"time":"2026-12-05T21:50:46Z","level":"INFO","msg":"registration table: partition loaded","partition":2,"devices":5001,"took":"1.5s"}
{"time":"2026-12-05T21:50:47Z","level":"INFO","msg":"registration table: dropped revoked partitions","partitions":[0,1],"devices":9}
`
	s := ParseLog([]byte(log))
	if len(s.Joins) != 2 || s.Joins[1].Generation != 2 || len(s.Owned()) != 2 || s.Owned()[0] != 2 {
		t.Errorf("joins %+v", s.Joins)
	}
	if len(s.Loads) != 2 || s.Loads[0].Took != 330*time.Millisecond || s.Loads[0].Devices != 5000 {
		t.Errorf("loads %+v", s.Loads)
	}
	if l, ok := s.LastLoad(2); !ok || l.Took != 1500*time.Millisecond || l.Devices != 5001 {
		t.Errorf("last load of 2: %+v %v", l, ok)
	}
	if _, ok := s.LastLoad(3); ok {
		t.Error("partition 3 was never loaded")
	}
	if s.Dropped != 2 {
		t.Errorf("dropped %d", s.Dropped)
	}
}

func TestCoverExactly(t *testing.T) {
	for _, tc := range []struct {
		owned [][]int
		want  bool
	}{
		{[][]int{{0, 1}, {2, 3}}, true},
		{[][]int{{3, 0}, {}, {2, 1}}, true},
		{[][]int{{0, 1}, {1, 2, 3}}, false},
		{[][]int{{0, 1}, {3}}, false},
		{nil, false},
	} {
		if got := coverExactly(tc.owned, 4); got != tc.want {
			t.Errorf("coverExactly(%v) = %v", tc.owned, got)
		}
	}
}

// TestPartitionOf: a registration (key device_id/registration_id) and a wake (key device_id)
// of a device go where PartitionOf says.
func TestPartitionOf(t *testing.T) {
	parts := make([]int, 12)
	for i := range parts {
		parts[i] = i
	}
	seen := map[int]bool{}
	for _, dev := range []string{"0123456789abcdef0123456789abcdef", "ffffffffffffffffffffffffffffffff", "00000000000000000000000000000001", "a", "bb", "ccc", "dddd", "eeeee"} {
		p := PartitionOf(dev, 12)
		seen[p] = true
		for _, key := range []string{dev, dev + "/0123456789abcdef0123456789abcdef"} {
			if got := balancer.Balance(kafka.Message{Key: []byte(key)}, parts...); got != p {
				t.Errorf("%s: balancer %d, PartitionOf %d", key, got, p)
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("every device in one partition: %v", seen)
	}
}

func TestParts(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{{nil, "none"}, {[]int{3}, "3"}, {[]int{0, 1}, "0,1"}, {[]int{0, 1, 2, 3}, "0–3"}, {[]int{0, 2, 5}, "0,2,5"}} {
		if got := parts(tc.in); got != tc.want {
			t.Errorf("parts(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
