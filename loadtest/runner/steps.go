package runner

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/wakepush/wakepush/deploy/local/proccpu"
	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

// cpuSample is every watched process's CPU time at one moment.
type cpuSample struct {
	at      time.Time
	cpu     []time.Duration // by cpuWatch index; -1 when unreadable
	machine time.Duration   // every CPU's busy time (proccpu.Machine); -1 when unreadable
}

// cpuWatch samples the CPU time of the stack's processes: each service, ClickHouse (when the
// run started it), the Kafka broker (a child process unless Options.InProcessBroker) and this
// process (the generator and the mocks, and kfake when in process), and the machine's.
type cpuWatch struct {
	names []string
	pids  []int
}

func (st *stack) cpuWatch() *cpuWatch {
	w := &cpuWatch{}
	for _, p := range st.procs {
		w.names = append(w.names, p.Name)
		w.pids = append(w.pids, p.Pid())
	}
	if st.ch != nil {
		w.names = append(w.names, "clickhouse")
		w.pids = append(w.pids, st.ch.Pid())
	}
	if st.broker != nil { // the broker as a child process (chaos_stack.go)
		w.names = append(w.names, "kafka")
		w.pids = append(w.pids, st.broker.Pid())
	}
	if p := st.mocks.proc(); p != nil { // the provider mocks as a child process (mocks.go)
		w.names = append(w.names, "mocks")
		w.pids = append(w.pids, p.Pid())
	}
	w.names = append(w.names, "loadtest")
	w.pids = append(w.pids, os.Getpid())
	return w
}

func (w *cpuWatch) sample() cpuSample {
	s := cpuSample{at: time.Now(), cpu: make([]time.Duration, len(w.pids))}
	for i, pid := range w.pids {
		d, err := proccpu.Read(pid)
		if err != nil {
			d = -1
		}
		s.cpu[i] = d
	}
	if m, err := proccpu.Machine(); err == nil {
		s.machine = m
	} else {
		s.machine = -1
	}
	return s
}

// machine is the cores the whole machine used between a and b (every process; -1: unknown).
func (w *cpuWatch) machine(a, b cpuSample) float64 {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 || a.machine < 0 || b.machine < 0 {
		return -1
	}
	return (b.machine - a.machine).Seconds() / wall
}

// cores is the cores each process used between a and b (CPU time / wall time).
func (w *cpuWatch) cores(a, b cpuSample) map[string]float64 {
	wall := b.at.Sub(a.at).Seconds()
	if w == nil || wall <= 0 || len(a.cpu) != len(w.names) || len(b.cpu) != len(w.names) {
		return nil
	}
	out := map[string]float64{}
	for i, n := range w.names {
		if a.cpu[i] < 0 || b.cpu[i] < 0 {
			continue
		}
		out[n] = (b.cpu[i] - a.cpu[i]).Seconds() / wall
	}
	return out
}

// sharedMachineCores is how many cores other processes may use during a step before the report
// warns that the machine was shared.
const sharedMachineCores = 0.2

// othersCores is what the machine used beyond the watched processes (-1: unknown).
func othersCores(cpu map[string]float64, machine float64) float64 {
	if machine < 0 || cpu == nil {
		return -1
	}
	for _, c := range cpu {
		machine -= c
	}
	return machine
}

// judgeSteps measures every step of the load phase that was (at least partly) sent and, for
// a ramp, judges it against the bounds. leadE2E[i] is event i's leading-edge latency (-1: not
// a leading-edge event or uncovered); cpu[k] is the sample at step k's start, cpu[k+1] at its
// end (or when sending stopped).
func judgeSteps(sum *report.Summary, sc *scenario.Scenario, plan *scenario.Plan, events []analysis.Event, leadE2E []time.Duration,
	loadStart time.Time, sentFor time.Duration, w *cpuWatch, cpu []cpuSample) {
	sum.Steps = nil
	for k, step := range plan.Steps {
		if step.From >= sentFor {
			break
		}
		st := report.Step{Rate: step.Rate, From: step.From, To: min(step.To, sentFor), Complete: step.To <= sentFor}
		var ack, lead []time.Duration
		for i, e := range events {
			at := e.Intended.Sub(loadStart)
			if at < step.From || at >= step.To {
				continue
			}
			st.Sent++
			if e.Accepted {
				st.Accepted++
				ack = append(ack, e.Answered.Sub(e.Intended))
			}
			if leadE2E[i] >= 0 {
				lead = append(lead, leadE2E[i])
			}
		}
		if d := (st.To - st.From).Seconds(); d > 0 {
			st.Throughput = float64(st.Accepted) / d
		}
		st.Ack = analysis.Summarize(ack)
		st.Leading = analysis.Summarize(lead)
		if k+1 < len(cpu) {
			st.CPU = w.cores(cpu[k], cpu[k+1])
			st.MachineCores = w.machine(cpu[k], cpu[k+1])
		}
		st.Sustained = true
		if r := sc.Ramp; r != nil {
			miss := func(format string, args ...any) {
				st.Sustained = false
				st.Missed = append(st.Missed, fmt.Sprintf(format, args...))
			}
			if !st.Complete {
				miss("not sent to the end")
			}
			if st.Sent == 0 || float64(st.Accepted) < r.MinAccepted*float64(st.Sent) {
				miss("%d of %d accepted", st.Accepted, st.Sent)
			}
			if st.Ack.P99 > r.MaxAckP99.D() {
				miss("answer p99 %s", st.Ack.P99.Round(time.Millisecond))
			}
			if r.MaxLeadingP99 > 0 && st.Leading.P99 > r.MaxLeadingP99.D() {
				miss("leading p99 %s", st.Leading.P99.Round(time.Millisecond))
			}
		}
		if others := othersCores(st.CPU, st.MachineCores); others > sharedMachineCores {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("the machine was shared: at %.0f/s offered, other processes used %.2f cores "+
				"(the machine %.2f of %d): the pipeline and the harness had less than the whole machine, the figures understate it",
				step.Rate, others, st.MachineCores, runtime.NumCPU()))
		}
		sum.Steps = append(sum.Steps, st)
	}
	if sum.Ramp == nil {
		return
	}
	sum.Ramp.MaxSustained = 0
	for _, st := range sum.Steps {
		if !st.Sustained {
			break
		}
		sum.Ramp.MaxSustained = st.Rate
	}
}
