package senderbench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Targets.
const (
	TargetSender = "sender"     // the wakepush sender binary: Kafka in, APNs out, Kafka records
	TargetBare   = "bare-apns2" // a bare sideshow/apns2 client loop
)

// Processes whose CPU a measurement charges.
const (
	ProcTarget  = "target"  // the sender or the bare apns2 child
	ProcBroker  = "broker"  // the Kafka broker child (idle for the bare target)
	ProcMock    = "mock"    // the APNs mock child
	ProcHarness = "harness" // this process (producing the wakes, polling)
)

// procNames is the column order of the processes.
var procNames = []string{ProcTarget, ProcBroker, ProcMock, ProcHarness}

// Measurement is one target's send phase in one run.
type Measurement struct {
	Run    int           `json:"run"` // 1…runs
	Target string        `json:"target"`
	Pushes int           `json:"pushes"` // delivered (accepted by the mock) during the phase
	Wall   time.Duration `json:"wall_ns"`
	// CPU is each process's user + system CPU time over the phase (/proc/<pid>/stat).
	CPU map[string]time.Duration `json:"cpu_ns"`
	// SelfCPU is the bare child's own getrusage over its loop (a cross-check of CPU[target]).
	SelfCPU time.Duration `json:"self_reported_cpu_ns,omitempty"`
}

// Row is a Measurement per push: one line of the report.
type Row struct {
	Run        int     `json:"run"` // 0 in a median row
	Target     string  `json:"target"`
	Pushes     int     `json:"pushes"`
	WallS      float64 `json:"wall_s"`
	PushesPerS float64 `json:"pushes_per_s"`
	// µs of CPU per delivered push, by process (ProcTarget, ProcBroker, ProcMock, ProcHarness).
	TargetUS  float64 `json:"target_cpu_us_per_push"`
	BrokerUS  float64 `json:"broker_cpu_us_per_push"`
	MockUS    float64 `json:"mock_cpu_us_per_push"`
	HarnessUS float64 `json:"harness_cpu_us_per_push"`
	// SelfUS is the bare child's own account of its loop's CPU per push (0: not reported).
	SelfUS float64 `json:"self_reported_cpu_us_per_push,omitempty"`
}

// RowOf turns a measurement into per-push figures (zeros when nothing was delivered).
func RowOf(m Measurement) Row {
	r := Row{Run: m.Run, Target: m.Target, Pushes: m.Pushes, WallS: m.Wall.Seconds()}
	if m.Pushes <= 0 {
		return r
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(m.Pushes) }
	if m.Wall > 0 {
		r.PushesPerS = float64(m.Pushes) / m.Wall.Seconds()
	}
	r.TargetUS = per(m.CPU[ProcTarget])
	r.BrokerUS = per(m.CPU[ProcBroker])
	r.MockUS = per(m.CPU[ProcMock])
	r.HarnessUS = per(m.CPU[ProcHarness])
	if m.SelfCPU > 0 {
		r.SelfUS = per(m.SelfCPU)
	}
	return r
}

// Median is the median of xs (the mean of the middle two for an even count; NaN for none).
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// MedianRow is the column-wise median of a target's rows (Run 0).
func MedianRow(target string, rows []Row) Row {
	var pushes, wall, rate, tgt, broker, mock, harness, self []float64
	for _, r := range rows {
		if r.Target != target {
			continue
		}
		pushes = append(pushes, float64(r.Pushes))
		wall = append(wall, r.WallS)
		rate = append(rate, r.PushesPerS)
		tgt = append(tgt, r.TargetUS)
		broker = append(broker, r.BrokerUS)
		mock = append(mock, r.MockUS)
		harness = append(harness, r.HarnessUS)
		if r.SelfUS > 0 {
			self = append(self, r.SelfUS)
		}
	}
	m := Row{Target: target}
	if len(pushes) == 0 {
		return m
	}
	m.Pushes = int(math.Round(Median(pushes)))
	m.WallS, m.PushesPerS = Median(wall), Median(rate)
	m.TargetUS, m.BrokerUS, m.MockUS, m.HarnessUS = Median(tgt), Median(broker), Median(mock), Median(harness)
	if len(self) > 0 {
		m.SelfUS = Median(self)
	}
	return m
}

// Ratios are the sender's CPU per push over the bare apns2 loop's, for the target process.
type Ratios struct {
	// PerRun[k] is run k+1's sender / bare-apns2 (the two measured in the same minutes); NaN when
	// a run lacks one of them.
	PerRun []Ratio `json:"per_run"`
	// Median of PerRun (the headline), and the ratio of the two targets' medians.
	Median     Ratio `json:"median"`
	OfMedians  Ratio `json:"of_medians"`
	WithBroker Ratio `json:"with_broker_of_medians"` // (sender + broker) / (bare + broker), medians
}

// Ratio is a ratio that may be undefined (NaN), which JSON writes as null.
type Ratio float64

// MarshalJSON writes NaN and infinities as null.
func (r Ratio) MarshalJSON() ([]byte, error) {
	f := float64(r)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// ComputeRatios pairs the sender and bare rows of each run.
func ComputeRatios(rows []Row, runs int) Ratios {
	r := Ratios{PerRun: make([]Ratio, runs)}
	var ok []float64
	for k := 1; k <= runs; k++ {
		var s, b *Row
		for i := range rows {
			switch {
			case rows[i].Run != k:
			case rows[i].Target == TargetSender:
				s = &rows[i]
			case rows[i].Target == TargetBare:
				b = &rows[i]
			}
		}
		r.PerRun[k-1] = Ratio(math.NaN())
		if s != nil && b != nil && s.Pushes > 0 && b.TargetUS > 0 {
			v := s.TargetUS / b.TargetUS
			r.PerRun[k-1] = Ratio(v)
			ok = append(ok, v)
		}
	}
	r.Median = Ratio(Median(ok))
	sm, bm := MedianRow(TargetSender, rows), MedianRow(TargetBare, rows)
	r.OfMedians, r.WithBroker = Ratio(math.NaN()), Ratio(math.NaN())
	if bm.TargetUS > 0 && sm.Pushes > 0 {
		r.OfMedians = Ratio(sm.TargetUS / bm.TargetUS)
		r.WithBroker = Ratio((sm.TargetUS + sm.BrokerUS) / (bm.TargetUS + bm.BrokerUS))
	}
	return r
}

// Config is what a report was measured with.
type Config struct {
	Devices     int           `json:"devices"`
	Runs        int           `json:"runs"`
	Concurrency int           `json:"concurrency"`
	Conns       int           `json:"conns"`
	MockLatency time.Duration `json:"mock_latency_ns"`
	Partitions  int           `json:"partitions"`
	Targets     []string      `json:"targets"`
	// SenderBinary is the sender measured when it was not built from the workspace.
	SenderBinary string `json:"sender_binary,omitempty"`
}

// Report is the benchmark's outcome.
type Report struct {
	Config       Config        `json:"config"`
	Host         string        `json:"host"`
	Started      time.Time     `json:"started"`
	LoadBefore   string        `json:"loadavg_before"` // /proc/loadavg when it started …
	LoadAfter    string        `json:"loadavg_after"`  // … and when it ended
	Measurements []Measurement `json:"measurements"`
	Rows         []Row         `json:"rows"`
	Medians      []Row         `json:"medians"`
	Ratios       *Ratios       `json:"ratios,omitempty"` // with both targets
	Failures     []string      `json:"failures,omitempty"`
}

// Finish derives the rows, medians and ratios from the measurements.
func (r *Report) Finish() {
	r.Rows = r.Rows[:0]
	for _, m := range r.Measurements {
		r.Rows = append(r.Rows, RowOf(m))
	}
	r.Medians = nil
	for _, t := range r.Config.Targets {
		r.Medians = append(r.Medians, MedianRow(t, r.Rows))
	}
	r.Ratios = nil
	if slices.Contains(r.Config.Targets, TargetSender) && slices.Contains(r.Config.Targets, TargetBare) {
		rt := ComputeRatios(r.Rows, r.Config.Runs)
		r.Ratios = &rt
	}
}

// WriteMarkdown writes the report as markdown: the setup, one row per target and run, the
// medians, the ratio and any failures.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "## sender-bench: wakepush sender vs bare apns2\n\n")
	fmt.Fprintf(&b, "%d devices, one wake each; concurrency %d; %d APNs connection(s); mock latency %s; %d partitions; %d run(s), targets alternating.  \n",
		c.Devices, c.Concurrency, c.Conns, c.MockLatency, c.Partitions, c.Runs)
	if c.SenderBinary != "" {
		fmt.Fprintf(&b, "Sender binary: %s.  \n", c.SenderBinary)
	}
	fmt.Fprintf(&b, "Host %s, started %s; load average before: %s, after: %s.\n\n", r.Host, r.Started.UTC().Format(time.RFC3339), r.LoadBefore, r.LoadAfter)
	b.WriteString("CPU µs per delivered push, by process (/proc/<pid>/stat user+system over the send phase):\n\n")
	b.WriteString("| run | target | pushes | wall s | pushes/s | target µs/push | broker µs/push | mock µs/push | harness µs/push |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	row := func(run string, x Row) {
		fmt.Fprintf(&b, "| %s | %s | %d | %.2f | %.0f | %.1f | %.1f | %.1f | %.1f |\n",
			run, x.Target, x.Pushes, x.WallS, x.PushesPerS, x.TargetUS, x.BrokerUS, x.MockUS, x.HarnessUS)
	}
	for _, x := range r.Rows {
		row(fmt.Sprint(x.Run), x)
	}
	for _, x := range r.Medians {
		row("**median**", x)
	}
	if rt := r.Ratios; rt != nil {
		per := make([]string, len(rt.PerRun))
		for i, v := range rt.PerRun {
			per[i] = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&b, "\n**sender / bare-apns2 CPU per push: %.2f×** (median of the per-run ratios %s; ratio of the medians %.2f×; "+
			"with the broker's CPU added to both: %.2f×)\n", rt.Median, strings.Join(per, ", "), rt.OfMedians, rt.WithBroker)
	}
	for _, x := range r.Medians {
		if x.SelfUS > 0 {
			fmt.Fprintf(&b, "\n%s's own getrusage over its loop: %.1f µs/push (median), a cross-check of /proc.\n", x.Target, x.SelfUS)
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

// WriteJSON writes the report as indented JSON to path.
func (r *Report) WriteJSON(path string) error { return WriteJSON(path, r) }

// WriteJSON writes a report (this package's or sendermemory's) as indented JSON to path.
func WriteJSON(path string, report any) error {
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return nil
}
