// Package report writes a load test's results: summary.json (for machines), report.md (for
// people) and PNG plots (latency over time, throughput over time, latency CDF).
package report

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wakepush/wakepush/loadtest/analysis"
)

// Summary is everything the run measured; it is written as summary.json.
type Summary struct {
	Scenario   string    `json:"scenario"`
	Started    time.Time `json:"started"`
	LoadPhase  string    `json:"load_phase"`
	Host       string    `json:"host"`
	Ingests    int       `json:"ingest_processes"`
	Components string    `json:"component_mode"`
	// ServiceProcs is the GOMAXPROCS each service ran with (0: Go's default, the machine's cores).
	ServiceProcs int `json:"service_gomaxprocs"`
	// KafkaPartitions is the partition count of every topic.
	KafkaPartitions int `json:"kafka_partitions"`

	Devices    int            `json:"devices"`
	Accounts   int            `json:"accounts"`
	Planned    int            `json:"planned_publishes"`
	Sent       int            `json:"sent"`
	Accepted   int            `json:"accepted"`
	Rejected   int            `json:"rejected"` // error answers / non-2xx
	Failed     int            `json:"failed"`   // no answer (connection lost, timeout)
	SentHTTP   int            `json:"sent_http"`
	Urgent     int            `json:"urgent"`
	Conditions map[string]int `json:"error_conditions,omitempty"`

	TargetRate    float64       `json:"target_rate"`
	MockFaultRate float64       `json:"mock_fault_rate"` // injected 500+503 share of provider requests
	Throughput    float64       `json:"throughput_accepted_per_s"`
	SendLagMax    time.Duration `json:"send_lag_max_ns"` // how late the open-loop scheduler sent

	Ack        analysis.Quantiles `json:"ack_latency"`         // answer − intended send, component IQs
	AckHTTP    analysis.Quantiles `json:"ack_latency_http"`    // answer − intended send, HTTP event API
	E2E        analysis.Quantiles `json:"e2e_latency"`         // mock arrival − intended send, all covered events
	E2ELeading analysis.Quantiles `json:"e2e_latency_leading"` // events the oracle wakes at once (leading edge, urgent)

	Wakes          int      `json:"wakes_received"`
	OracleWakes    int      `json:"oracle_min_wakes"`
	WakesPerEvent  float64  `json:"wakes_per_event"`
	OraclePerEvent float64  `json:"oracle_wakes_per_event"`
	Uncovered      int      `json:"uncovered_events"`
	UncoveredList  []string `json:"uncovered_sample,omitempty"`
	// UncoveredTimeline is what happened around the first uncovered events, device by device
	// (ClickHouse's events, wakes and deliveries, and the mock's arrivals, in time order).
	UncoveredTimeline []string       `json:"uncovered_timeline,omitempty"`
	DuplicateIDs      int            `json:"duplicate_wake_ids"`
	DuplicatePush     int            `json:"duplicate_pushes"`
	Deliveries        map[string]int `json:"deliveries_by_outcome"` // ClickHouse deliveries
	ProviderErrors    int            `json:"provider_errors"`

	// E2ELeadingFirst is E2ELeading without the events whose covering wake was refused by a
	// provider mock at least once (the injected 500/503 faults): the pipeline's own speed.
	E2ELeadingFirst analysis.Quantiles `json:"e2e_latency_leading_first_attempt"`

	// RegistrationsConsumed is how long after the last registration the recorder had consumed
	// them all (the load phase waits for it).
	RegistrationsConsumed string `json:"registrations_consumed_after,omitempty"`
	// Warmup is the warm-up before the load phase (nil: none); nothing in it counts above.
	Warmup *Warmup `json:"warmup,omitempty"`

	// Steps are the load phase's rate steps (one without a ramp), judged one by one.
	Steps []Step `json:"steps"`
	// Ramp is the find-max-rate outcome (nil without a ramp).
	Ramp *Ramp `json:"ramp,omitempty"`

	ClickHouse CHCheck `json:"clickhouse"`
	// Kafka compares Kafka with ClickHouse, counts dead letters and duplicate bursts (chaos.go).
	Kafka *KafkaCheck `json:"kafka,omitempty"`
	// Chaos is the outcome of the scenario's faults (nil without faults; chaos.go).
	Chaos *Chaos `json:"chaos,omitempty"`

	Series   []analysis.Bucket `json:"series"`
	Failures []string          `json:"failures"`
	Warnings []string          `json:"warnings,omitempty"`
	Plots    []string          `json:"plots"`
}

// Step is one span of the load phase offered at one rate.
type Step struct {
	Rate       float64            `json:"offered_rate"`
	From       time.Duration      `json:"from_ns"`
	To         time.Duration      `json:"to_ns"`
	Sent       int                `json:"sent"`
	Accepted   int                `json:"accepted"`
	Throughput float64            `json:"throughput_accepted_per_s"`
	Ack        analysis.Quantiles `json:"ack_latency"` // component and HTTP together
	Leading    analysis.Quantiles `json:"e2e_latency_leading"`
	// CPU is the cores each process used during the step (CPU seconds / wall seconds): the
	// services and ClickHouse (the pipeline), the Kafka broker and the load test process
	// (generator and mocks: the harness, HarnessProcesses).
	CPU map[string]float64 `json:"cpu_cores,omitempty"`
	// MachineCores is the cores the whole machine used meanwhile (/proc/stat; -1 unknown):
	// less the processes above, what other jobs on the machine took.
	MachineCores float64 `json:"machine_cores,omitempty"`
	// Complete: the whole step was sent (the ramp did not stop during it).
	Complete  bool     `json:"complete"`
	Sustained bool     `json:"sustained"`
	Missed    []string `json:"missed,omitempty"` // the bounds the step missed
}

// Warmup is what the warm-up before the load phase measured (scenario.Warmup): traffic to
// devices of its own, a ramp up to Rate over Duration, then a Settle pause.
type Warmup struct {
	Started    time.Time      `json:"started"`
	Duration   time.Duration  `json:"duration_ns"`
	Rate       float64        `json:"rate"` // the ramp's end
	Devices    int            `json:"devices"`
	Settle     time.Duration  `json:"settle_ns"`
	Sent       int            `json:"sent"`
	Accepted   int            `json:"accepted"`
	Conditions map[string]int `json:"error_conditions,omitempty"`
	// Answer latency from the intended send time: all, the first second, the last second.
	Ack            analysis.Quantiles `json:"ack_latency"`
	AckFirstSecond analysis.Quantiles `json:"ack_latency_first_second"`
	AckLastSecond  analysis.Quantiles `json:"ack_latency_last_second"`
	Wakes          int                `json:"wakes_received"` // by the mocks for warm-up devices, until the run's end
	CPU            map[string]float64 `json:"cpu_cores,omitempty"`
	MachineCores   float64            `json:"machine_cores,omitempty"`
}

// HarnessProcesses are the processes of the load test itself rather than of the pipeline under
// test: the Kafka broker (kfake standing in for Kafka), the provider mocks and the load test
// process (the generator, and the mocks or kfake when they run in it).
var HarnessProcesses = []string{"kafka", "mocks", "loadtest"}

// Ramp is the outcome of the find-max-rate mode.
type Ramp struct {
	MaxAckP99     time.Duration `json:"max_ack_p99_ns"`
	MaxLeadingP99 time.Duration `json:"max_leading_p99_ns,omitempty"`
	MinAccepted   float64       `json:"min_accepted"`
	// Stopped says why the ramp stopped raising the rate ("" when it reached its max).
	Stopped string `json:"stopped,omitempty"`
	// MaxSustained is the offered rate of the highest step that met every bound, all steps
	// below it included (0: not even the first).
	MaxSustained float64 `json:"max_sustained_rate"`
}

// CHCheck is the ClickHouse side of the cross-check.
type CHCheck struct {
	Events         int      `json:"events"`
	Wakes          int      `json:"wakes"`
	Uncovered      int      `json:"uncovered_events"`
	LatencyEvents  int      `json:"latency_events"`
	Undelivered    int      `json:"undelivered"`
	P50MaxMinuteMS float64  `json:"p50_ms_worst_minute"`
	P99MaxMinuteMS float64  `json:"p99_ms_worst_minute"`
	MaxMS          float64  `json:"max_ms"`
	CaughtUpAfter  string   `json:"caught_up_after"`
	Agree          bool     `json:"agree"`
	Disagreements  []string `json:"disagreements,omitempty"`
}

// Write writes summary.json and report.md into dir.
func Write(dir string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(Markdown(s)), 0o644)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func qrow(name string, q analysis.Quantiles) string {
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %s | %s |\n", name, q.N, ms(q.P50), ms(q.P90), ms(q.P99), ms(q.P999), ms(q.Max))
}

// Markdown renders the report.
func Markdown(s *Summary) string {
	var b strings.Builder
	verdict := "PASS"
	if len(s.Failures) > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "# Load test `%s`: %s\n\n", s.Scenario, verdict)
	procs := "Go's default"
	if s.ServiceProcs > 0 {
		procs = strconv.Itoa(s.ServiceProcs)
	}
	fmt.Fprintf(&b, "Started %s on %s; load phase %s; %d ingest process(es), components: %s; each service's GOMAXPROCS: %s; %d partitions per topic.\n\n",
		s.Started.UTC().Format(time.RFC3339), s.Host, s.LoadPhase, s.Ingests, s.Components, procs, s.KafkaPartitions)
	if len(s.Failures) > 0 {
		b.WriteString("## Failures\n\n")
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "- **%s**\n", f)
		}
		b.WriteString("\n")
	}
	if len(s.Warnings) > 0 {
		b.WriteString("## Warnings\n\n")
		for _, f := range s.Warnings {
			fmt.Fprintf(&b, "- %s\n", f)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Load\n\n| measure | value |\n|---|---|\n")
	row := func(k string, v any) { fmt.Fprintf(&b, "| %s | %v |\n", k, v) }
	row("devices / accounts", fmt.Sprintf("%d / %d", s.Devices, s.Accounts))
	row("planned / sent publishes", fmt.Sprintf("%d / %d (%d over HTTP, %d urgent)", s.Planned, s.Sent, s.SentHTTP, s.Urgent))
	row("accepted / rejected / no answer", fmt.Sprintf("%d / %d / %d", s.Accepted, s.Rejected, s.Failed))
	if len(s.Conditions) > 0 {
		row("error answers", conditionCounts(s.Conditions))
	}
	row("target rate", fmt.Sprintf("%.0f publishes/s (open loop)", s.TargetRate))
	row("sustained throughput", fmt.Sprintf("%.0f accepted publishes/s", s.Throughput))
	row("worst scheduler lag", ms(s.SendLagMax)+" ms")
	b.WriteString("\n## Latency (ms, from the intended send time)\n\n| latency | n | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n")
	b.WriteString(qrow("IQ ack (component)", s.Ack))
	if s.AckHTTP.N > 0 {
		b.WriteString(qrow("HTTP event ack", s.AckHTTP))
	}
	b.WriteString(qrow("end to end, leading edge + urgent", s.E2ELeading))
	if s.MockFaultRate > 0 && s.E2ELeadingFirst.N > 0 {
		b.WriteString(qrow("… of these, wakes accepted on the first attempt", s.E2ELeadingFirst))
	}
	b.WriteString(qrow("end to end, all events (incl. trailing)", s.E2E))
	b.WriteString("\nEnd to end = the provider mock received the first wake for the event's device at or after the event was sent. " +
		"Trailing-edge events wait up to min_interval by design, so only the leading-edge row measures the pipeline's speed. " +
		"That row leaves out events whose device received a wake less than min_interval + 250 ms before the send (the pipeline times intervals from its own wakes, so it rightly coalesces them).\n\n")
	if s.MockFaultRate > 0 {
		fmt.Fprintf(&b, "The provider mocks failed %.1f %% of requests on purpose (500/503): those wakes reached the mock only on the sender's retry, "+
			"so latency quantiles above p%.1f include retry backoff. The first-attempt row leaves out events covered by a wake that a mock refused at least once "+
			"(the RETRY deliveries in ClickHouse).\n\n", 100*s.MockFaultRate, 100*(1-s.MockFaultRate))
	}
	writeWarmup(&b, s)
	writeSteps(&b, s)
	b.WriteString("## Wakes and loss\n\n| measure | value |\n|---|---|\n")
	row("wakes received by the mocks", s.Wakes)
	row("oracle minimum (DESIGN §5 replayed over the sent stream)", s.OracleWakes)
	row("wakes per accepted event / oracle", fmt.Sprintf("%.4f / %.4f (×%.3f)", s.WakesPerEvent, s.OraclePerEvent, safeDiv(float64(s.Wakes), float64(s.OracleWakes))))
	row("uncovered events (loss)", s.Uncovered)
	row("duplicate wake ids (extra pushes)", fmt.Sprintf("%d (%d)", s.DuplicateIDs, s.DuplicatePush))
	row("provider errors (deliveries not ACCEPTED)", s.ProviderErrors)
	if len(s.Deliveries) > 0 {
		row("deliveries by outcome (ClickHouse)", fmt.Sprint(s.Deliveries))
	}
	for _, u := range s.UncoveredList {
		fmt.Fprintf(&b, "\n- uncovered: %s", u)
	}
	if len(s.UncoveredTimeline) > 0 {
		b.WriteString("\n\nWhat happened around the first uncovered events (ClickHouse and the provider mock, in time order):\n\n```\n")
		for _, l := range s.UncoveredTimeline {
			b.WriteString(l + "\n")
		}
		b.WriteString("```")
	}
	b.WriteString("\n\n")
	writeChaos(&b, s)
	c := s.ClickHouse
	b.WriteString("## ClickHouse cross-check\n\n| measure | load test | ClickHouse |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| accepted events | %d | %d |\n", s.Accepted, c.Events)
	fmt.Fprintf(&b, "| uncovered events (`uncovered_events`) | %d | %d |\n", s.Uncovered, c.Uncovered)
	fmt.Fprintf(&b, "| undelivered events (`latency_quantiles`) | %d | %d |\n", s.Uncovered, c.Undelivered)
	fmt.Fprintf(&b, "| e2e p50 / p99 / max (ms) | %s / %s / %s | worst minute %.0f / %.0f / %.0f (accepted → delivery recorded) |\n",
		ms(s.E2E.P50), ms(s.E2E.P99), ms(s.E2E.Max), c.P50MaxMinuteMS, c.P99MaxMinuteMS, c.MaxMS)
	fmt.Fprintf(&b, "\nRecorder caught up after %s. Views agree: **%v**.\n", c.CaughtUpAfter, c.Agree)
	for _, d := range c.Disagreements {
		fmt.Fprintf(&b, "- DISAGREEMENT: %s\n", d)
	}
	if len(s.Plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range s.Plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	return b.String()
}

// writeSteps renders the find-max-rate table, or the CPU split of a fixed-rate run.
func writeSteps(b *strings.Builder, s *Summary) {
	if len(s.Steps) == 0 {
		return
	}
	var cpus []map[string]float64
	for _, st := range s.Steps {
		cpus = append(cpus, st.CPU)
	}
	cols := cpuColumns(cpus...)
	cpu := func(st Step) string { return cpuCells(cols, st.CPU, st.MachineCores) }
	cpuHead := cpuHeader(cols)
	cpuSep := strings.Repeat("|---", len(cols)+4)
	if r := s.Ramp; r != nil {
		b.WriteString("## Find max rate\n\n")
		fmt.Fprintf(b, "Bounds per step: ≥ %.1f %% accepted, answer p99 ≤ %s ms", 100*r.MinAccepted, ms(r.MaxAckP99))
		if r.MaxLeadingP99 > 0 {
			fmt.Fprintf(b, ", leading-edge p99 ≤ %s ms", ms(r.MaxLeadingP99))
		}
		b.WriteString(", the whole step sent.\n\n")
		if r.MaxSustained > 0 {
			fmt.Fprintf(b, "**Highest sustained offered rate: %.0f publishes/s.**", r.MaxSustained)
		} else {
			b.WriteString("**Not even the first step met the bounds.**")
		}
		if r.Stopped != "" {
			fmt.Fprintf(b, " The ramp stopped raising the rate: %s.", r.Stopped)
		}
		b.WriteString("\n\n| offered/s | accepted/s | sent | accepted % | answer p50 / p99 ms | leading p50 / p99 ms | " + cpuHead + " | verdict |\n")
		b.WriteString("|---|---|---|---|---|---" + cpuSep + "|---|\n")
		for _, st := range s.Steps {
			verdict := "sustained"
			if !st.Sustained {
				verdict = "missed: " + strings.Join(st.Missed, "; ")
			}
			fmt.Fprintf(b, "| %.0f | %.0f | %d | %.2f | %s / %s | %s / %s | %s | %s |\n", st.Rate, st.Throughput, st.Sent,
				100*safeDiv(float64(st.Accepted), float64(st.Sent)), ms(st.Ack.P50), ms(st.Ack.P99), ms(st.Leading.P50), ms(st.Leading.P99), cpu(st), verdict)
		}
		b.WriteString("\n")
		return
	}
	if len(cols) > 0 {
		b.WriteString("## CPU\n\nCores used during the load phase (CPU seconds / wall seconds). " + cpuNote + "\n\n")
		b.WriteString("| " + cpuHead + " |\n" + cpuSep + "|\n| " + cpu(s.Steps[0]) + " |\n\n")
	}
}

const cpuNote = "Pipeline: the services and ClickHouse; harness: the Kafka broker (`kafka`, kfake), both provider mocks " +
	"(`mocks`) and the load test process (`loadtest`: the generator, plus the mocks or kfake when run in it); machine: every " +
	"CPU's busy time (`/proc/stat`), others = machine − pipeline − harness (other jobs on the machine)."

// cpuColumns orders the processes of the CPU maps: the pipeline's (sorted), then the harness's.
func cpuColumns(maps ...map[string]float64) []string {
	var pipe, harness []string
	for _, m := range maps {
		for k := range m {
			switch {
			case slices.Contains(HarnessProcesses, k):
				if !slices.Contains(harness, k) {
					harness = append(harness, k)
				}
			case !slices.Contains(pipe, k):
				pipe = append(pipe, k)
			}
		}
	}
	slices.Sort(pipe)
	slices.SortFunc(harness, func(a, b string) int { return slices.Index(HarnessProcesses, a) - slices.Index(HarnessProcesses, b) })
	return append(pipe, harness...)
}

// cpuHeader is the CPU columns' header: the pipeline's processes, its total, the harness's
// processes, its total, the machine, the others.
func cpuHeader(cols []string) string {
	var h []string
	harness := false
	for _, c := range cols {
		if !harness && slices.Contains(HarnessProcesses, c) {
			h = append(h, "**pipeline**")
			harness = true
		}
		h = append(h, c)
	}
	if !harness {
		h = append(h, "**pipeline**")
	}
	return strings.Join(append(h, "**harness**", "machine", "others"), " | ")
}

func cpuCells(cols []string, m map[string]float64, machine float64) string {
	var cells []string
	var pipe, harness float64
	inHarness := false
	for _, c := range cols {
		if !inHarness && slices.Contains(HarnessProcesses, c) {
			cells = append(cells, fmt.Sprintf("**%.2f**", pipe))
			inHarness = true
		}
		if slices.Contains(HarnessProcesses, c) {
			harness += m[c]
		} else {
			pipe += m[c]
		}
		cells = append(cells, fmt.Sprintf("%.2f", m[c]))
	}
	if !inHarness {
		cells = append(cells, fmt.Sprintf("**%.2f**", pipe))
	}
	cells = append(cells, fmt.Sprintf("**%.2f**", harness))
	if machine > 0 {
		cells = append(cells, fmt.Sprintf("%.2f", machine), fmt.Sprintf("%.2f", max(machine-pipe-harness, 0)))
	} else {
		cells = append(cells, "?", "?")
	}
	return strings.Join(cells, " | ")
}

// writeWarmup renders the warm-up.
func writeWarmup(b *strings.Builder, s *Summary) {
	w := s.Warmup
	if w == nil {
		if s.RegistrationsConsumed != "" {
			fmt.Fprintf(b, "No warm-up: the load phase started on a cold pipeline, %s after the last registration.\n\n", s.RegistrationsConsumed)
		}
		return
	}
	b.WriteString("## Warm-up (not counted)\n\n")
	fmt.Fprintf(b, "After the registrations were consumed (%s after the last one): %s ramping from %.0f/s to %.0f/s on %d devices of its own, "+
		"then %s of quiet before the load phase. Nothing here counts in the load phase's figures.\n\n",
		s.RegistrationsConsumed, w.Duration, w.Rate/10, w.Rate, w.Devices, w.Settle)
	b.WriteString("| measure | value |\n|---|---|\n")
	fmt.Fprintf(b, "| sent / accepted | %d / %d |\n", w.Sent, w.Accepted)
	if len(w.Conditions) > 0 {
		fmt.Fprintf(b, "| refused | %s |\n", conditionCounts(w.Conditions))
	}
	fmt.Fprintf(b, "| answer p50 / p99 / max ms, all | %s / %s / %s |\n", ms(w.Ack.P50), ms(w.Ack.P99), ms(w.Ack.Max))
	fmt.Fprintf(b, "| … first second (cold) | %s / %s / %s |\n", ms(w.AckFirstSecond.P50), ms(w.AckFirstSecond.P99), ms(w.AckFirstSecond.Max))
	fmt.Fprintf(b, "| … last second | %s / %s / %s |\n", ms(w.AckLastSecond.P50), ms(w.AckLastSecond.P99), ms(w.AckLastSecond.Max))
	fmt.Fprintf(b, "| wakes for warm-up devices | %d |\n\n", w.Wakes)
	if cols := cpuColumns(w.CPU); len(cols) > 0 {
		b.WriteString("CPU cores during the warm-up traffic:\n\n| " + cpuHeader(cols) + " |\n" + strings.Repeat("|---", len(cols)+4) + "|\n| " +
			cpuCells(cols, w.CPU, w.MachineCores) + " |\n\n")
	}
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// conditionCounts lists error conditions with their counts, by name: "wait ×3, cancel ×1".
func conditionCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
