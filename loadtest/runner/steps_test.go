package runner

import (
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

func TestCPUWatchCores(t *testing.T) {
	w := &cpuWatch{names: []string{"ingest", "gone"}}
	at := time.Unix(100, 0)
	a := cpuSample{at: at, cpu: []time.Duration{time.Second, -1}}
	b := cpuSample{at: at.Add(2 * time.Second), cpu: []time.Duration{4 * time.Second, 3 * time.Second}}
	got := w.cores(a, b)
	if len(got) != 1 || got["ingest"] != 1.5 {
		t.Fatalf("cores = %v, want ingest 1.5 (3 s of CPU in 2 s) and nothing for the unreadable one", got)
	}
	if w.cores(b, a) != nil {
		t.Fatal("negative wall time must give nothing")
	}
}

// TestJudgeSteps: each step is judged on its own events against the ramp's bounds, and the
// sustained maximum is the last step of the unbroken passing prefix.
func TestJudgeSteps(t *testing.T) {
	sc := &scenario.Scenario{Rate: 100, Ramp: &scenario.Ramp{Step: 100, Every: scenario.Duration(time.Second), Max: 400,
		MaxAckP99: scenario.Duration(50 * time.Millisecond), MinAccepted: 0.99}}
	plan := &scenario.Plan{Steps: []scenario.Step{
		{Rate: 100, From: 0, To: time.Second},
		{Rate: 200, From: time.Second, To: 2 * time.Second},
		{Rate: 300, From: 2 * time.Second, To: 3 * time.Second},
		{Rate: 400, From: 3 * time.Second, To: 4 * time.Second},
	}}
	start := time.Unix(1000, 0)
	var events []analysis.Event
	var lead []time.Duration
	add := func(at, ack time.Duration, ok bool) {
		e := analysis.Event{Intended: start.Add(at), Accepted: ok}
		e.Sent = e.Intended
		e.Answered = e.Intended.Add(ack)
		events = append(events, e)
		lead = append(lead, 20*time.Millisecond)
	}
	for i := range 100 { // step 1: fast, all accepted
		add(time.Duration(i)*10*time.Millisecond, 5*time.Millisecond, true)
	}
	for i := range 200 { // step 2: fast, all accepted
		add(time.Second+time.Duration(i)*5*time.Millisecond, 10*time.Millisecond, true)
	}
	for i := range 300 { // step 3: slow answers
		add(2*time.Second+time.Duration(i)*3*time.Millisecond, 80*time.Millisecond, true)
	}
	for i := range 200 { // step 4: refusals, and sending stopped at 3.5 s
		add(3*time.Second+time.Duration(i)*2500*time.Microsecond, 5*time.Millisecond, i%10 != 0)
	}
	sum := &report.Summary{Ramp: &report.Ramp{}}
	judgeSteps(sum, sc, plan, events, lead, start, 3500*time.Millisecond, nil, nil)

	if len(sum.Steps) != 4 {
		t.Fatalf("steps = %+v", sum.Steps)
	}
	for k, want := range []struct {
		sent, accepted int
		sustained      bool
		complete       bool
	}{{100, 100, true, true}, {200, 200, true, true}, {300, 300, false, true}, {200, 180, false, false}} {
		st := sum.Steps[k]
		if st.Sent != want.sent || st.Accepted != want.accepted || st.Sustained != want.sustained || st.Complete != want.complete {
			t.Errorf("step %d = sent %d accepted %d sustained %v complete %v (missed %v), want %+v",
				k, st.Sent, st.Accepted, st.Sustained, st.Complete, st.Missed, want)
		}
	}
	if got := sum.Steps[1].Throughput; got != 200 {
		t.Errorf("step 2 throughput %v, want 200/s", got)
	}
	if got := sum.Steps[3].Throughput; got != 360 {
		t.Errorf("step 4 throughput %v, want 180 accepted in the 0.5 s sent = 360/s", got)
	}
	if len(sum.Steps[2].Missed) != 1 || sum.Steps[2].Ack.P99 != 80*time.Millisecond {
		t.Errorf("step 3 missed %v (ack p99 %s), want only the answer bound", sum.Steps[2].Missed, sum.Steps[2].Ack.P99)
	}
	if len(sum.Steps[3].Missed) != 2 {
		t.Errorf("step 4 missed %v, want not-sent-to-the-end and accepted share", sum.Steps[3].Missed)
	}
	if sum.Ramp.MaxSustained != 200 {
		t.Errorf("max sustained %v, want 200", sum.Ramp.MaxSustained)
	}

	// The leading-edge bound, when set, is judged too.
	sc.Ramp.MaxLeadingP99 = scenario.Duration(10 * time.Millisecond)
	judgeSteps(sum, sc, plan, events, lead, start, 3500*time.Millisecond, nil, nil)
	if sum.Ramp.MaxSustained != 0 || sum.Steps[0].Sustained {
		t.Errorf("with leading p99 20 ms over a 10 ms bound: max sustained %v, step 1 %+v", sum.Ramp.MaxSustained, sum.Steps[0])
	}
}

// TestSharedMachine: the machine's busy time beyond the watched processes is the others' share;
// a step where it exceeds sharedMachineCores is a warning, never a failure.
func TestSharedMachine(t *testing.T) {
	w := &cpuWatch{names: []string{"ingest", "loadtest"}}
	at := time.Unix(100, 0)
	cpu := []cpuSample{
		{at: at, cpu: []time.Duration{0, 0}, machine: 10 * time.Second},
		{at: at.Add(2 * time.Second), cpu: []time.Duration{time.Second, time.Second}, machine: 13 * time.Second},
	}
	if m := w.machine(cpu[0], cpu[1]); m != 1.5 {
		t.Fatalf("machine %v cores, want 1.5", m)
	}
	if o := othersCores(w.cores(cpu[0], cpu[1]), 1.5); o < 0.49 || o > 0.51 {
		t.Fatalf("others %v cores, want 0.5", o)
	}
	if o := othersCores(map[string]float64{"ingest": 1}, -1); o != -1 {
		t.Fatalf("others with the machine unknown: %v", o)
	}
	sc := &scenario.Scenario{Rate: 100}
	plan := &scenario.Plan{Steps: []scenario.Step{{Rate: 100, From: 0, To: 2 * time.Second}}}
	start := time.Unix(1000, 0)
	events := []analysis.Event{{Intended: start, Sent: start, Answered: start.Add(time.Millisecond), Accepted: true}}
	sum := &report.Summary{}
	judgeSteps(sum, sc, plan, events, []time.Duration{-1}, start, 2*time.Second, w, cpu)
	if len(sum.Warnings) != 1 || len(sum.Failures) != 0 || sum.Steps[0].MachineCores != 1.5 {
		t.Errorf("warnings %q, failures %q, step %+v", sum.Warnings, sum.Failures, sum.Steps[0])
	}
	cpu[1].machine = 12*time.Second + 100*time.Millisecond // others 0.05 cores: no warning
	sum = &report.Summary{}
	judgeSteps(sum, sc, plan, events, []time.Duration{-1}, start, 2*time.Second, w, cpu)
	if len(sum.Warnings) != 0 {
		t.Errorf("warnings %q", sum.Warnings)
	}
}
