package sendermemory

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wakepush/wakepush/deploy/local/freeport"
	"github.com/wakepush/wakepush/loadtest/procs"
)

// instance is one sender process of a group.
type instance struct {
	index   int // 1… within its group
	proc    *procs.Process
	admin   string // host:port of /readyz and /metrics
	pprof   string // host:port of /debug/pprof (to force a GC before reading the live heap)
	started time.Time
	ready   time.Duration // start → /readyz 200 (0: not yet)
}

// startInstance starts a sender with its own admin and pprof ports and its log in dir.
func (r *run) startInstance(index int, dir string) (*instance, error) {
	admin, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	pprof, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	env := []string{
		"WAKEPUSH_KAFKA_BROKERS=" + r.broker.Addr,
		"WAKEPUSH_KAFKA_PARTITIONS=" + strconv.Itoa(r.opts.Partitions),
		"WAKEPUSH_APPS_FILE=" + r.appsFile,
		"WAKEPUSH_ADMIN_ADDR=" + admin,
		"WAKEPUSH_PPROF_ADDR=" + pprof,
		"WAKEPUSH_LOG_FORMAT=json",
		"WAKEPUSH_LOG_LEVEL=info",
		"WAKEPUSH_SENDER_REGISTRY_RETAIN=" + r.opts.Retain.String(),
	}
	name := fmt.Sprintf("sender-%d", index)
	p, err := procs.Start(name, r.bins[SenderPackage], filepath.Join(dir, name+".log"), env)
	if err != nil {
		return nil, err
	}
	return &instance{index: index, proc: p, admin: admin, pprof: pprof, started: time.Now()}, nil
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// get fetches url and returns the body of a 200 answer; ok is false for other statuses.
func get(ctx context.Context, url string) (body []byte, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, false, err
	}
	return b, resp.StatusCode == http.StatusOK, nil
}

// isReady asks /readyz (and notes the time of the first 200).
func (in *instance) isReady(ctx context.Context) bool {
	_, ok, err := get(ctx, "http://"+in.admin+"/readyz")
	if err == nil && ok && in.ready == 0 {
		in.ready = time.Since(in.started)
	}
	return err == nil && ok
}

// metrics reads the instance's /metrics.
func (in *instance) metrics(ctx context.Context) (map[string]float64, error) {
	b, ok, err := get(ctx, "http://"+in.admin+"/metrics")
	if err != nil || !ok {
		return nil, fmt.Errorf("%s /metrics: %v (%s)", in.proc.Name, err, firstLine(b))
	}
	return ParseMetrics(b), nil
}

// forceGC has the instance run a garbage collection (net/http/pprof's heap profile with gc=1),
// so that go_gc_heap_live_bytes is the heap live now.
func (in *instance) forceGC(ctx context.Context) error {
	b, ok, err := get(ctx, "http://"+in.pprof+"/debug/pprof/heap?gc=1")
	if err != nil || !ok {
		return fmt.Errorf("%s: force a GC: %v (%s)", in.proc.Name, err, firstLine(b))
	}
	return nil
}

func firstLine(b []byte) string {
	l, _, _ := bytes.Cut(b, []byte("\n"))
	return string(l)
}

// ParseMetrics reads a Prometheus text exposition: each metric's samples summed over their
// labels (the sender's gauges have one sample each).
func ParseMetrics(b []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		// The value follows the labels (which may hold spaces) or the name; a timestamp may follow.
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}

// procStatus reads VmRSS and VmHWM (peak RSS) of a process from /proc/<pid>/status, in bytes.
func procStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) < 1 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// LogState is what an instance's log says about its partitions.
type LogState struct {
	// Joins are the generations it joined, in order, with their partitions.
	Joins []Join
	// Loads are its "registration table: partition loaded" lines, in order.
	Loads []Load
	// Dropped counts partitions dropped after being revoked.
	Dropped int
}

// Join is a "joined consumer group" line.
type Join struct {
	At         time.Time `json:"at"`
	Generation int       `json:"generation"`
	Partitions []int     `json:"partitions"`
}

// Load is a "registration table: partition loaded" line.
type Load struct {
	At        time.Time     `json:"at"`
	Partition int           `json:"partition"`
	Devices   int64         `json:"devices"`
	Took      time.Duration `json:"took_ns"`
}

// Owned is the partitions of the last generation it joined (nil before the first).
func (s LogState) Owned() []int {
	if len(s.Joins) == 0 {
		return nil
	}
	return s.Joins[len(s.Joins)-1].Partitions
}

// LastLoad is the latest load of partition p (false: never loaded).
func (s LogState) LastLoad(p int) (Load, bool) {
	for i := len(s.Loads) - 1; i >= 0; i-- {
		if s.Loads[i].Partition == p {
			return s.Loads[i], true
		}
	}
	return Load{}, false
}

// ParseLog reads the sender's JSON log lines (WAKEPUSH_LOG_FORMAT=json); other lines are skipped.
func ParseLog(b []byte) LogState {
	var s LogState
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var rec struct {
			Time       time.Time       `json:"time"`
			Msg        string          `json:"msg"`
			Partition  *int            `json:"partition"`
			Partitions json.RawMessage `json:"partitions"`
			Devices    int64           `json:"devices"`
			Took       json.RawMessage `json:"took"`
			Generation int             `json:"generation"`
		}
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "joined consumer group":
			var ps []int
			_ = json.Unmarshal(rec.Partitions, &ps)
			s.Joins = append(s.Joins, Join{At: rec.Time, Generation: rec.Generation, Partitions: ps})
		case "registration table: partition loaded":
			if rec.Partition == nil {
				continue
			}
			s.Loads = append(s.Loads, Load{At: rec.Time, Partition: *rec.Partition, Devices: rec.Devices, Took: parseTook(rec.Took)})
		case "registration table: dropped revoked partitions":
			var ps []int
			_ = json.Unmarshal(rec.Partitions, &ps)
			s.Dropped += len(ps)
		}
	}
	return s
}

// parseTook reads a slog duration: nanoseconds in JSON, a Go duration string otherwise.
func parseTook(raw json.RawMessage) time.Duration {
	var ns int64
	if json.Unmarshal(raw, &ns) == nil {
		return time.Duration(ns)
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		d, _ := time.ParseDuration(str)
		return d
	}
	return 0
}

// logState parses the instance's log so far.
func (in *instance) logState() LogState {
	b, err := os.ReadFile(in.proc.Log)
	if err != nil {
		return LogState{}
	}
	return ParseLog(b)
}

// coverExactly reports whether the owned partition sets are disjoint and together 0…p−1.
func coverExactly(owned [][]int, p int) bool {
	var all []int
	for _, o := range owned {
		all = append(all, o...)
	}
	slices.Sort(all)
	if len(all) != p {
		return false
	}
	for i, v := range all {
		if v != i {
			return false
		}
	}
	return true
}
