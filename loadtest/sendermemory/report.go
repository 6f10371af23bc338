package sendermemory

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wakepush/wakepush/loadtest/senderbench"
)

// Config is what a report was measured with.
type Config struct {
	Devices      []int         `json:"devices"`
	Instances    []int         `json:"instances"`
	Partitions   int           `json:"partitions"`
	Retain       time.Duration `json:"retain_ns"`
	StableFor    time.Duration `json:"stable_for_ns"`
	Sequential   bool          `json:"sequential,omitempty"`
	SenderBinary string        `json:"sender_binary,omitempty"`
	GOGC         string        `json:"gogc,omitempty"` // the environment the senders inherited
	GOMEMLIMIT   string        `json:"gomemlimit,omitempty"`
}

// Instance is one sender of a stable group.
type Instance struct {
	Index      int    `json:"index"` // 1… within its group
	Pid        int    `json:"pid"`
	Log        string `json:"log"`
	Partitions []int  `json:"partitions"` // of its last generation
	Devices    int64  `json:"devices"`    // wakepush_sender_registrations
	// HeapLiveLastGC is go_gc_heap_live_bytes as found (the last GC the runtime ran by itself);
	// HeapLive the same after a GC forced through pprof's heap?gc=1 — the figure to compare.
	HeapLiveLastGC int64   `json:"heap_live_last_gc_bytes"`
	HeapLive       int64   `json:"heap_live_bytes"`
	HeapInuse      int64   `json:"heap_inuse_bytes"` // go_memstats_heap_inuse_bytes (after the forced GC)
	RSS            int64   `json:"resident_bytes"`   // process_resident_memory_bytes
	VmRSS          int64   `json:"vm_rss_bytes"`     // /proc/<pid>/status
	VmHWM          int64   `json:"vm_hwm_bytes"`     // peak RSS since start (/proc/<pid>/status)
	BytesPerDevice float64 `json:"heap_live_bytes_per_device_over_baseline,omitempty"`
	// Ready is from the process's start until /readyz answered 200 (first assignment loaded);
	// 0: never.
	Ready       time.Duration `json:"ready_ns"`
	Loads       []Load        `json:"loads"`       // every partition load of its life
	Generations int           `json:"generations"` // group generations it joined
	Dropped     int           `json:"dropped"`     // partitions dropped after a revocation
}

// SlowestOwnedLoad is the longest last load among its partitions.
func (in Instance) SlowestOwnedLoad() time.Duration {
	s := LogState{Loads: in.Loads}
	var d time.Duration
	for _, p := range in.Partitions {
		if l, ok := s.LastLoad(p); ok {
			d = max(d, l.Took)
		}
	}
	return d
}

// Group is one group size at one device count.
type Group struct {
	Instances   int           `json:"instances"`
	StableAfter time.Duration `json:"stable_after_ns"` // start of the processes → stable group
	Members     []Instance    `json:"members"`
}

// WakeWait is one wake of the rebalance check.
type WakeWait struct {
	Partition int `json:"partition"`
	Owner     int `json:"owner"` // instance index after the rebalance (3: the new one; -1: unknown)
	// LoadedAnew: the owner loaded the partition after the third instance started (a
	// partition new to it); LoadTook is that load.
	LoadedAnew bool          `json:"loaded_anew"`
	LoadTook   time.Duration `json:"load_took_ns"`
	// Wait is from the wake's produce call until the mock received its push (-1: never).
	Wait time.Duration `json:"wait_ns"`
}

// Rebalance is the check of a third instance joining two stable ones.
type Rebalance struct {
	Devices     int           `json:"devices"`
	JoinedAfter time.Duration `json:"joined_after_ns"` // its start → its "joined consumer group"
	Wakes       []WakeWait    `json:"wakes"`
	MaxWait     time.Duration `json:"max_wait_ns"`
	// FullLoad is the 1-instance group's slowest partition load at the same device count (every
	// partition loading at once: the whole table), FullReady its start → ready.
	FullLoad  time.Duration `json:"full_table_load_ns,omitempty"`
	FullReady time.Duration `json:"full_table_ready_ns,omitempty"`
}

// Round is one device count.
type Round struct {
	Devices     int           `json:"devices"`
	Produced    int           `json:"produced"` // registrations produced for this round
	ProduceWall time.Duration `json:"produce_wall_ns"`
	BrokerRSS   int64         `json:"broker_rss_bytes"` // after producing
	Groups      []Group       `json:"groups"`
	Rebalance   *Rebalance    `json:"rebalance,omitempty"`
}

// Harness is the harness's own cost.
type Harness struct {
	CPU     time.Duration `json:"cpu_ns"`         // user + system over the whole run (/proc/self/stat)
	PeakRSS int64         `json:"peak_rss_bytes"` // VmHWM
	Wall    time.Duration `json:"wall_ns"`
}

// Report is a measurement's outcome.
type Report struct {
	Config     Config    `json:"config"`
	Host       string    `json:"host"`
	Started    time.Time `json:"started"`
	LoadBefore string    `json:"loadavg_before"`
	LoadAfter  string    `json:"loadavg_after"`
	// Baseline is one sender with no device registered: the fixed cost of an instance.
	Baseline  *Instance `json:"baseline,omitempty"`
	Rounds    []Round   `json:"rounds"`
	Harness   Harness   `json:"harness"`
	BrokerRSS int64     `json:"broker_rss_bytes"` // at the end
	Failures  []string  `json:"failures,omitempty"`
}

// Finish derives each instance's live heap per device over the baseline.
func (r *Report) Finish() {
	if r.Baseline == nil {
		return
	}
	for i := range r.Rounds {
		for j := range r.Rounds[i].Groups {
			for k := range r.Rounds[i].Groups[j].Members {
				m := &r.Rounds[i].Groups[j].Members[k]
				if m.Devices > 0 {
					m.BytesPerDevice = float64(m.HeapLive-r.Baseline.HeapLive) / float64(m.Devices)
				}
			}
		}
	}
}

func readyS(d time.Duration) string {
	if d <= 0 {
		return "**never**"
	}
	return secs(d)
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func mbNum(b int64) string { return fmt.Sprintf("%.1f", float64(b)/1e6) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// WriteMarkdown writes the report as markdown.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "## sender-memory: memory per sender instance\n\n")
	start := "instances of a group started at once"
	if c.Sequential {
		start = "instances of a group started one after the other, each once the previous one was ready"
	}
	fmt.Fprintf(&b, "%d partitions; registry retain %s; %s; group stable for %s before measuring", c.Partitions, c.Retain, start, c.StableFor)
	if c.GOGC != "" || c.GOMEMLIMIT != "" {
		fmt.Fprintf(&b, "; GOGC=%q GOMEMLIMIT=%q", c.GOGC, c.GOMEMLIMIT)
	}
	b.WriteString(".  \n")
	if c.SenderBinary != "" {
		fmt.Fprintf(&b, "Sender binary: %s.  \n", c.SenderBinary)
	}
	fmt.Fprintf(&b, "Host %s, started %s; load average before: %s, after: %s.\n\n", r.Host, r.Started.UTC().Format(time.RFC3339), r.LoadBefore, r.LoadAfter)
	b.WriteString("Per instance once the group is stable. heap live: `go_gc_heap_live_bytes` after a forced GC; " +
		"heap in use: `go_memstats_heap_inuse_bytes`; RSS: VmRSS, peak: VmHWM (`/proc/<pid>/status`); " +
		"B/device: (heap live − the baseline's) / devices held; loads: partitions it loaded in its life (churn while the group formed); " +
		"slowest load: the longest load of a partition it owns.\n\n")
	b.WriteString("| devices | instances | instance | partitions | devices held | heap live MB | heap in use MB | RSS MB | peak RSS MB | B/device | loads | slowest load s | ready s |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	if m := r.Baseline; m != nil {
		fmt.Fprintf(&b, "| 0 (baseline) | 1 | 1 | %s | %d | %s | %s | %s | %s | – | %d | – | %s |\n",
			parts(m.Partitions), m.Devices, mbNum(m.HeapLive), mbNum(m.HeapInuse), mbNum(m.VmRSS), mbNum(m.VmHWM), len(m.Loads), secs(m.Ready))
	}
	for _, rd := range r.Rounds {
		for _, g := range rd.Groups {
			for _, m := range g.Members {
				bpd := "–"
				if m.BytesPerDevice != 0 {
					bpd = fmt.Sprintf("%.0f", m.BytesPerDevice)
				}
				fmt.Fprintf(&b, "| %d | %d | %d | %s | %d | %s | %s | %s | %s | %s | %d | %s | %s |\n",
					rd.Devices, g.Instances, m.Index, parts(m.Partitions), m.Devices, mbNum(m.HeapLive), mbNum(m.HeapInuse),
					mbNum(m.VmRSS), mbNum(m.VmHWM), bpd, len(m.Loads), secs(m.SlowestOwnedLoad()), readyS(m.Ready))
			}
		}
	}
	b.WriteString("\nLargest instance per group (what a pod's memory limit must cover):\n\n")
	b.WriteString("| devices | instances | devices held (max) | heap live MB (max) | RSS MB (max) | peak RSS MB (max) | group stable after s |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, rd := range r.Rounds {
		for _, g := range rd.Groups {
			var dev, live, rss, hwm int64
			for _, m := range g.Members {
				dev, live, rss, hwm = max(dev, m.Devices), max(live, m.HeapLive), max(rss, m.VmRSS), max(hwm, m.VmHWM)
			}
			fmt.Fprintf(&b, "| %d | %d | %d | %s | %s | %s | %s |\n", rd.Devices, g.Instances, dev, mbNum(live), mbNum(rss), mbNum(hwm), secs(g.StableAfter))
		}
	}
	for _, rd := range r.Rounds {
		rb := rd.Rebalance
		if rb == nil {
			continue
		}
		fmt.Fprintf(&b, "\nRebalance at %d devices: a third instance joins two stable ones (joined %s s after its start); one wake per partition produced as it joined, "+
			"timed from the produce call to the mock receiving its push:\n\n", rb.Devices, secs(rb.JoinedAfter))
		b.WriteString("| partition | owner after | loaded anew | its load s | wake wait s |\n|---|---|---|---|---|\n")
		for _, wk := range rb.Wakes {
			load, anew := "–", "no (kept)"
			if wk.LoadedAnew {
				load, anew = secs(wk.LoadTook), "yes"
			}
			wait := secs(wk.Wait)
			if wk.Wait < 0 {
				wait = "never"
			}
			fmt.Fprintf(&b, "| %d | %d | %s | %s | %s |\n", wk.Partition, wk.Owner, anew, load, wait)
		}
		anew := 0
		for _, wk := range rb.Wakes {
			if wk.LoadedAnew {
				anew++
			}
		}
		fmt.Fprintf(&b, "\n**Slowest wake: %s s**; %d of %d partitions loaded anew by their owner after the rebalance; "+
			"the whole table loading in one instance (1 instance, slowest partition): %s s, ready after %s s.\n",
			secs(rb.MaxWait), anew, len(rb.Wakes), secs(rb.FullLoad), secs(rb.FullReady))
	}
	fmt.Fprintf(&b, "\nHarness (producing, polling): %s s CPU over %s s, peak RSS %s. Broker (kfake) RSS at the end: %s.\n",
		secs(r.Harness.CPU), secs(r.Harness.Wall), mb(r.Harness.PeakRSS), mb(r.BrokerRSS))
	for _, rd := range r.Rounds {
		if rd.Produced > 0 && rd.ProduceWall > 0 {
			fmt.Fprintf(&b, "Produced %d registrations for %d devices in %s s (%.0f/s); broker RSS then %s.  \n",
				rd.Produced, rd.Devices, secs(rd.ProduceWall), float64(rd.Produced)/rd.ProduceWall.Seconds(), mb(rd.BrokerRSS))
		}
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n**FAIL**\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// parts writes a partition list compactly: 0–5, or 0,3,7.
func parts(ps []int) string {
	if len(ps) == 0 {
		return "none"
	}
	contiguous := true
	for i := 1; i < len(ps); i++ {
		if ps[i] != ps[i-1]+1 {
			contiguous = false
		}
	}
	if contiguous && len(ps) > 2 {
		return fmt.Sprintf("%d–%d", ps[0], ps[len(ps)-1])
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

// ReadJSON reads a report WriteJSON wrote.
func ReadJSON(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error { return senderbench.WriteJSON(path, r) }
