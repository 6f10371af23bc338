// Package runner runs a load-test scenario against the whole wakepush pipeline: it starts the
// stack (in-process kfake, ClickHouse, APNs and FCM mocks, the four service binaries), plays
// N XMPP servers that ingest connects to over XEP-0114, registers the devices through ingest's
// HTTP API, sends the scenario's publishes open-loop, and measures what comes out at the
// provider mocks and in ClickHouse.
package runner

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
	"github.com/wakepush/wakepush/loadtest/xmppserver"
)

// DefaultKafkaPartitions is the partition count of every topic of a run unless
// Options.KafkaPartitions says otherwise.
const DefaultKafkaPartitions = 4

// Options configure a run.
type Options struct {
	Scenario  *scenario.Scenario
	ReportDir string // created if missing; logs, apps file, report, plots
	// Build builds a service's main package and returns the binary (e.g. procs.GoBuild).
	Build func(pkg string) (string, error)
	// Race: the binaries were built with -race (sets GORACE so exits are quick).
	Race bool
	// ClickHouseTCP is a running ClickHouse's native address; empty starts one (libchdb).
	ClickHouseTCP string
	// ComponentMode: auto (WAKEPUSH_COMPONENTS when ingest supports it), list, or single (one
	// ingest process per XMPP server).
	ComponentMode string
	// ServiceProcs > 0 is the GOMAXPROCS of every service process, as the Helm chart's
	// goMaxProcsFromRequests sets it from a pod's CPU request (1 for the default requests); 0
	// leaves Go's default (the machine's cores). The harness processes keep Go's default.
	ServiceProcs int
	// KafkaPartitions is the partition count of every topic (WAKEPUSH_KAFKA_PARTITIONS of the
	// services, which create the topics); 0 means 4.
	KafkaPartitions int
	// Progress receives a line per second during the load phase (nil: none).
	Progress io.Writer
	// Profile > 0 fetches a CPU profile of that length from every service's
	// /debug/pprof/profile during the middle of the load phase, saves it in the report dir
	// and appends each service's top cumulative functions to report.md.
	Profile time.Duration
	// InProcessMocks runs the provider mocks inside this process instead of as a child process
	// (cmd/loadtest-mocks): their CPU is then counted as the load test process's.
	InProcessMocks bool
	// InProcessBroker runs kfake inside this process instead of as a child process
	// (procs.StartBroker); scenarios that freeze or restart the broker always use a child.
	InProcessBroker bool
	// Logf receives stage messages (nil: none).
	Logf func(format string, args ...any)
}

type registration struct {
	DeviceID string `json:"device_id"`
	Node     string `json:"node"`
	Secret   string `json:"secret"`
}

// Run runs the scenario and writes the report. The returned summary's Failures say whether
// the run passed; an error means the run itself could not be carried out.
func Run(ctx context.Context, opts Options) (*report.Summary, error) {
	sc := opts.Scenario
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(opts.ReportDir, 0o755); err != nil {
		return nil, err
	}
	plan := sc.Expand()
	if len(plan.Publishes) == 0 {
		return nil, errors.New("the scenario plans no publishes (rate × duration too small)")
	}
	logf("scenario %s: %d devices, %d planned publishes over %s", sc.Name, len(plan.Devices), len(plan.Publishes), sc.Duration.D())
	wp := sc.ExpandWarmup()
	st, err := startStack(ctx, opts, sc, plan, wp, logf)
	if err != nil {
		return nil, err
	}
	defer st.close()

	sum := &report.Summary{Scenario: sc.Name, Host: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU()),
		Ingests: len(st.ingestURLs), Components: st.mode, ServiceProcs: opts.ServiceProcs, KafkaPartitions: cmp.Or(opts.KafkaPartitions, DefaultKafkaPartitions), Devices: len(plan.Devices), Accounts: len(plan.Devices) * sc.AccountsPerDevice,
		Planned: len(plan.Publishes), TargetRate: sc.Rate, MockFaultRate: sc.Mock.Rate500 + sc.Mock.Rate503, Conditions: map[string]int{}, Deliveries: map[string]int{}}

	regs, err := registerAll(ctx, st.ingestURLs[0], sc, plan.Devices)
	if err != nil {
		return nil, err
	}
	logf("registered %d devices", len(regs))
	var warmRegs []registration
	if wp != nil {
		// After the scenario's devices: once the warm-up's wakes go out, the sender has read the
		// registrations before them.
		if warmRegs, err = registerAll(ctx, st.ingestURLs[0], sc, wp.Devices); err != nil {
			return nil, fmt.Errorf("warm-up devices: %w", err)
		}
	}
	events := make([]analysis.Event, len(plan.Publishes))
	runtime.GC() // now, not in the load phase
	took, err := waitRegistrations(ctx, st, time.Minute)
	if err != nil {
		sum.Warnings = append(sum.Warnings, err.Error())
	}
	logf("the pipeline consumed the registrations %s after the last one", took.Round(time.Millisecond))
	if wp != nil {
		logf("warm-up: %s ramping to %.0f/s on %d devices of its own (not counted)", sc.Warmup.Duration.D(), sc.Warmup.Rate, len(wp.Devices))
		if sum.Warmup, err = warmUp(ctx, st, sc, wp, warmRegs); err != nil {
			return nil, err
		}
		w := sum.Warmup
		if refused := w.Sent - w.Accepted; refused > 0 {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("the warm-up (not counted) had %d of %d publishes refused (%s): the pipeline "+
				"did not keep up with %.0f/s before the load phase started", refused, w.Sent, strings.TrimSpace(conditionList(w.Conditions)), w.Rate))
		}
		logf("warm-up: %d of %d accepted%s, answer p50/p99 %s/%s (first second %s/%s, last second %s/%s)", w.Accepted, w.Sent,
			conditionList(w.Conditions), w.Ack.P50.Round(100*time.Microsecond), w.Ack.P99.Round(100*time.Microsecond),
			w.AckFirstSecond.P50.Round(100*time.Microsecond), w.AckFirstSecond.P99.Round(100*time.Microsecond),
			w.AckLastSecond.P50.Round(100*time.Microsecond), w.AckLastSecond.P99.Round(100*time.Microsecond))
	}
	sum.RegistrationsConsumed = took.Round(time.Millisecond).String()

	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	profDone := startProfiles(pctx, opts, st, logf)

	if r := sc.Ramp; r != nil {
		sum.Ramp = &report.Ramp{MaxAckP99: r.MaxAckP99.D(), MaxLeadingP99: r.MaxLeadingP99.D(), MinAccepted: r.MinAccepted}
	}
	var drv *faultDriver // injects the scenario's faults from the load phase's start (faults.go)
	if len(sc.Faults) > 0 {
		dctx, dcancel := context.WithCancel(ctx)
		drv = newFaultDriver(dctx, st, sc, logf)
		st.loadStarted = drv.start
		defer func() { dcancel(); drv.wait() }() // before st.close
	}
	res, err := sendAll(ctx, opts, st, sc, plan, regs, sum, events)
	if err != nil {
		return nil, err
	}
	var faultRuns []*faultRun
	if drv != nil {
		logf("load done; waiting for the faults to end")
		faultRuns = drv.wait()
	}
	events = res.events
	sum.SendLagMax = res.lagMax
	loadStart := res.start
	loadEnd := loadStart.Add(res.length)
	sum.Started = loadStart
	sum.LoadPhase = res.length.Round(time.Millisecond).String()
	if sum.Ramp != nil {
		sum.Ramp.Stopped = res.stopped
		if res.stopped != "" {
			logf("ramp stopped: %s", res.stopped)
		}
	}

	// Drain: trailing wakes of the last events, counted from the last answer.
	lastAnswer := loadEnd
	for _, e := range events {
		if e.Answered.After(lastAnswer) {
			lastAnswer = e.Answered
		}
	}
	logf("load done; draining %s for trailing wakes", sc.Drain.D())
	select {
	case <-time.After(time.Until(lastAnswer.Add(sc.Drain.D()))):
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	if drv != nil {
		applyGrace(events, faultRuns, sc.Slack.D())
	}
	drained := time.Now()
	arrivals, warmWakes, err := collectArrivals(ctx, st)
	if err != nil {
		return nil, err
	}
	if sum.Warmup != nil {
		sum.Warmup.Wakes = warmWakes
	}
	v := analyse(sum, sc, plan, events, res.httpKind, arrivals, loadStart, res.length)
	judgeSteps(sum, sc, plan, events, v.leadE2E, loadStart, res.length, res.cpuWatch, res.cpu)

	retried := chCheck(ctx, st, sc, sum, regs, events, loadStart, lastAnswer, logf)
	sum.E2ELeadingFirst = firstAttempt(v, retried)
	if sum.UncoveredTimeline, err = timelines(ctx, st, sc, regs, events, v.uncovered, arrivals); err != nil {
		sum.Warnings = append(sum.Warnings, fmt.Sprintf("timelines of the uncovered events: %v", err))
	}
	received := kafkaCheck(ctx, st, sc, plan, regs, wp, warmRegs, sum, logf)
	if drv != nil {
		judgeFaults(sum, sc, events, received, v, arrivals, faultRuns, loadStart, drained)
	}

	for _, err := range st.stopServices() {
		sum.Failures = append(sum.Failures, err.Error())
	}

	plots, err := report.Plots(opts.ReportDir, sum.Series, v.ack, v.lead)
	if err != nil {
		sum.Warnings = append(sum.Warnings, err.Error())
	}
	sum.Plots = plots
	if err := report.Write(opts.ReportDir, sum); err != nil {
		return sum, err
	}
	if err := appendProfiles(opts.ReportDir, <-profDone); err != nil {
		return sum, err
	}
	return sum, nil
}

// registerAll registers every device through POST /v1/registrations, 16 at a time.
func registerAll(ctx context.Context, base string, sc *scenario.Scenario, devices []scenario.Device) ([]registration, error) {
	regs := make([]registration, len(devices))
	client := &http.Client{Timeout: 30 * time.Second}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(devices) || ctx.Err() != nil {
					return
				}
				d := devices[i]
				body, _ := json.Marshal(map[string]string{"app": sc.Apps[d.App].ID, "token": d.Token, "environment": "production"})
				var r registration
				err := postJSON(ctx, client, base+"/v1/registrations", "", body, http.StatusOK, &r)
				if err == nil && (r.Node == "" || r.Secret == "") {
					err = fmt.Errorf("incomplete registration answer %+v", r)
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("register device %d: %w", i, err) })
					next.Store(int64(len(devices)))
					return
				}
				regs[i] = r
			}
		}()
	}
	wg.Wait()
	return regs, firstErr
}

func postJSON(ctx context.Context, client *http.Client, url, bearer string, body []byte, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return &statusError{code: resp.StatusCode, body: string(b)}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.code, e.body) }

// sendResult is what sendAll did.
type sendResult struct {
	events   []analysis.Event // one per publish sent, in schedule order
	httpKind []bool           // events[i] went through the HTTP event API
	start    time.Time        // the load phase's start (the schedule's zero)
	length   time.Duration    // the schedule span actually sent
	lagMax   time.Duration
	stopped  string // why a ramp stopped early ("" when it did not)
	cpuWatch *cpuWatch
	cpu      []cpuSample // at each step's start, and at the end
}

// sendAll plays the schedule open loop: each publish goes out at its intended time (or as soon
// as possible after it when the sender is behind; latency always counts from the intended
// time, so a stall cannot hide). With a ramp it stops early once the scheduler falls more
// than ramp.max_lag behind or ingest refuses more than 1 % of the current step.
// events has room for every planned publish (allocated before the warm-up: a schedule of
// millions of publishes is hundreds of MB, and the garbage collector's cycle that follows the
// allocation should not fall into the load phase).
func sendAll(ctx context.Context, opts Options, st *stack, sc *scenario.Scenario, plan *scenario.Plan, regs []registration, sum *report.Summary,
	events []analysis.Event) (*sendResult, error) {
	n := len(plan.Publishes)
	httpKind := make([]bool, n)
	out := &sendResult{cpuWatch: st.cpuWatch(), length: sc.Duration.D()}
	stepSent := make([]atomic.Int64, len(plan.Steps))
	stepRefused := make([]atomic.Int64, len(plan.Steps))
	sem := make(chan struct{}, sc.MaxInFlight)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards sum's counters and conditions
	var sent, accepted, errs, offered atomic.Int64
	offered.Store(int64(sc.Rate))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var lagMax time.Duration

	fail := func(cond string) {
		errs.Add(1)
		mu.Lock()
		sum.Conditions[cond]++
		mu.Unlock()
	}
	finish := func(i, step int, at time.Time, ok bool, cond string) {
		events[i].Answered = at
		events[i].Accepted = ok
		if ok {
			accepted.Add(1)
		} else {
			fail(cond)
			stepRefused[step].Add(1)
		}
		<-sem
		wg.Done()
	}

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if opts.Progress != nil {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			var lastSent, lastAcc int64
			began := time.Now()
			for {
				select {
				case <-progressDone:
					return
				case <-tick.C:
				}
				s, a := sent.Load(), accepted.Load()
				fmt.Fprintf(opts.Progress, "\r[%4.0fs] offered %6d/s  sent %6d/s  accepted %6d/s  in flight %5d  errors %d  wakes %d  total %d/%d   ",
					time.Since(began).Seconds(), offered.Load(), s-lastSent, a-lastAcc, len(sem), errs.Load(), st.mocks.count(), s, n)
				lastSent, lastAcc = s, a
			}
		}()
	}

	start := time.Now().Add(200 * time.Millisecond)
	out.start = start
	if st.loadStarted != nil {
		st.loadStarted(start) // the fault driver's schedule counts from here
	}
	out.cpu = append(out.cpu, out.cpuWatch.sample())
	rr, step := 0, 0
	for i, pub := range plan.Publishes {
		intended := start.Add(pub.At)
		if d := time.Until(intended); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				// Answers still in flight are abandoned: the stack is torn down next.
				close(progressDone)
				progressWG.Wait()
				return nil, ctx.Err()
			}
		}
		for step+1 < len(plan.Steps) && pub.At >= plan.Steps[step].To {
			step++
			out.cpu = append(out.cpu, out.cpuWatch.sample())
			offered.Store(int64(plan.Steps[step].Rate))
		}
		sem <- struct{}{}
		if r := sc.Ramp; r != nil {
			lag := time.Since(intended)
			sentNow, refused := stepSent[step].Load(), stepRefused[step].Load()
			why := ""
			switch {
			case lag > r.MaxLag.D():
				why = fmt.Sprintf("at %.0f/s offered the generator fell %s behind its schedule (%d of max_in_flight %d answers outstanding)",
					plan.Steps[step].Rate, lag.Round(time.Millisecond), len(sem)-1, sc.MaxInFlight)
			case refused >= 20 && float64(refused) > 0.01*float64(sentNow):
				why = fmt.Sprintf("at %.0f/s offered ingest refused %d of %d publishes", plan.Steps[step].Rate, refused, sentNow)
			}
			if why != "" {
				<-sem
				out.stopped = why
				out.length = pub.At
				events, httpKind = events[:i], httpKind[:i]
				break
			}
		}
		stepSent[step].Add(1)
		wg.Add(1)
		dev := plan.Devices[pub.Device]
		r := regs[pub.Device]
		events[i] = analysis.Event{Device: pub.Device, Intended: intended, Urgent: pub.Urgent, Interval: sc.Apps[dev.App].MinInterval.D()}
		now := time.Now()
		events[i].Sent = now
		lagMax = max(lagMax, now.Sub(intended))
		sent.Add(1)
		if pub.Urgent {
			sum.Urgent++
		}
		if pub.HTTP {
			httpKind[i] = true
			sum.SentHTTP++
		}
		k := step
		st.publish(ctx, client, &rr, "u", pub, dev, r, func(at time.Time, ok bool, cond string) { finish(i, k, at, ok, cond) })
	}
	if out.stopped == "" {
		// The schedule's end, not the last publish: the load phase lasted the whole duration.
		if d := time.Until(start.Add(out.length)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
	}
	out.cpu = append(out.cpu, out.cpuWatch.sample())
	// Wait for the answers (bounded).
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		close(progressDone)
		progressWG.Wait()
		return nil, fmt.Errorf("%d publishes still unanswered 60 s after the load phase", len(sem))
	}
	close(progressDone)
	progressWG.Wait()
	if opts.Progress != nil {
		fmt.Fprintln(opts.Progress)
	}
	sum.Sent = int(sent.Load())
	for _, e := range events {
		if e.Accepted {
			sum.Accepted++
		}
	}
	for c, k := range sum.Conditions {
		if c == "no-answer" || c == "not-sent" || c == "http-failed" {
			sum.Failed += k
		} else {
			sum.Rejected += k
		}
	}
	out.events, out.httpKind, out.lagMax = events, httpKind, lagMax
	return out, nil
}

// publish sends pub for device dev (registration r) through the HTTP event API (pub.HTTP; the
// ingest processes taken in turn, *rr counting) or as a publish IQ from the device's account on
// its XMPP server (accounts are named <prefix><device>.<account>@<server domain>), and calls done
// exactly once with the answer: when it came, whether ingest accepted the publish, and else the
// condition ("wait:resource-constraint", "http-503", "no-answer", "not-sent", …).
func (st *stack) publish(ctx context.Context, client *http.Client, rr *int, prefix string, pub scenario.Publish, dev scenario.Device,
	r registration, done func(at time.Time, ok bool, cond string)) {
	if pub.HTTP {
		base := st.ingestURLs[*rr%len(st.ingestURLs)]
		*rr++
		body, _ := json.Marshal(map[string]any{"node": r.Node, "secret": r.Secret, "urgent": pub.Urgent, "important": true, "message_count": 1})
		go func() {
			err := postJSON(ctx, client, base+"/v1/events", eventToken, body, http.StatusAccepted, nil)
			cond := ""
			if err != nil {
				var se *statusError
				if errors.As(err, &se) {
					cond = fmt.Sprintf("http-%d", se.code)
				} else {
					cond = "http-failed"
				}
			}
			done(time.Now(), err == nil, cond)
		}()
		return
	}
	srv := st.servers[dev.Servers[pub.Account]]
	account := fmt.Sprintf("%s%d.%d@%s", prefix, pub.Device, pub.Account, srv.Domain)
	err := srv.Publish(account, r.Node, r.Secret, pub.Urgent, func(a xmppserver.Answer) {
		cond := ""
		switch {
		case a.Err != nil:
			cond = "no-answer"
		case !a.OK():
			cond = a.ErrorType + ":" + a.Condition
		}
		done(a.At, a.OK(), cond)
	})
	if err != nil {
		done(time.Now(), false, "not-sent")
	}
}

// collectArrivals maps the mocks' pushes to devices by token, sorted by time per device
// (unknown tokens under -1), and counts the warm-up devices' pushes apart.
func collectArrivals(ctx context.Context, st *stack) (map[int32][]analysis.Arrival, int, error) {
	all, err := st.mocks.arrivals(ctx)
	if err != nil {
		return nil, 0, err
	}
	out := map[int32][]analysis.Arrival{}
	warm := 0
	for _, a := range all {
		dev, ok := st.arrivals.tokens[a.Token]
		if !ok {
			if st.arrivals.warm[a.Token] {
				warm++
				continue
			}
			dev = -1
		}
		arr := analysis.Arrival{At: time.Unix(0, a.At), WakeID: a.WakeID}
		if a.Offered != 0 {
			arr.Offered = time.Unix(0, a.Offered)
		}
		out[dev] = append(out[dev], arr)
	}
	for _, as := range out {
		sortArrivals(as)
	}
	return out, warm, nil
}
