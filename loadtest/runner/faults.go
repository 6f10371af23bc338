package runner

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/wakepush/wakepush/loadtest/kafkatopic"
	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	"github.com/wakepush/wakepush/loadtest/scenario"
	"github.com/wakepush/wakepush/schemas/topics"
)

// restartReady bounds the wait for a restarted service to report ready: a coalescer or
// sender may first wait for its dead predecessor's consumer-group session to expire.
const restartReady = 3 * time.Minute

// catchUpLimit bounds the wait for the recorder to catch up after ClickHouse came back.
const catchUpLimit = 5 * time.Minute

// faultRun is one fault as the driver carried it out.
type faultRun struct {
	spec scenario.Fault
	// start is when the fault was injected; end when it ended (the restart issued, the broker
	// resumed, the storm cleared); ready when what was restarted answered again (zero for
	// faults without a restart or when it never did).
	start, end, ready time.Time
	errs              []string
	// catchUp is, after a clickhouse-stop or a recorder kill, how long after end the recorder
	// had written every event Kafka held when ClickHouse (or the recorder) was back (-1: not
	// measured; caughtUp false: not within catchUpLimit).
	catchUp  time.Duration
	caughtUp bool
}

func (r *faultRun) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// faultDriver injects the scenario's faults on schedule during the load phase, each in its
// own goroutine (faults on different parts of the stack may overlap).
type faultDriver struct {
	ctx  context.Context
	st   *stack
	sc   *scenario.Scenario
	logf func(string, ...any)
	runs []*faultRun
	mu   sync.Mutex // guards the runs' fields while the faults run
	wg   sync.WaitGroup
}

func newFaultDriver(ctx context.Context, st *stack, sc *scenario.Scenario, logf func(string, ...any)) *faultDriver {
	d := &faultDriver{ctx: ctx, st: st, sc: sc, logf: logf}
	for _, f := range sc.Faults {
		d.runs = append(d.runs, &faultRun{spec: f, catchUp: -1})
	}
	return d
}

// start schedules every fault from the load phase's start.
func (d *faultDriver) start(loadStart time.Time) {
	for _, r := range d.runs {
		d.wg.Go(func() {
			if !d.sleepUntil(loadStart.Add(r.spec.At.D())) {
				return
			}
			d.inject(r, loadStart.Add(r.spec.End()))
		})
	}
}

// wait waits until every fault has ended and what it restarted is back (or gave up).
func (d *faultDriver) wait() []*faultRun {
	d.wg.Wait()
	return d.runs
}

func (d *faultDriver) sleepUntil(t time.Time) bool {
	select {
	case <-time.After(time.Until(t)):
		return true
	case <-d.ctx.Done():
		return false
	}
}

func (d *faultDriver) set(f func()) {
	d.mu.Lock()
	f()
	d.mu.Unlock()
}

// inject carries out one fault that is to end at end.
func (d *faultDriver) inject(r *faultRun, end time.Time) {
	st, f := d.st, r.spec
	now := func() time.Time { return time.Now() }
	d.logf("fault: %s for %s", f.Name(), f.Duration.D())
	defer func() { d.logf("fault: %s over (%v)", f.Name(), r.errs) }()
	switch f.Kind {
	case scenario.FaultKill:
		idx := st.findProcs(d.sc.KillProcess(f.Target))
		if len(idx) == 0 {
			d.set(func() { r.fail("no process %q to kill", f.Target) })
			return
		}
		d.set(func() { r.start = now() })
		for _, i := range idx {
			if err := st.killProc(i); err != nil {
				d.set(func() { r.fail("%v", err) })
			}
		}
		d.sleepUntil(end)
		d.set(func() { r.end = now() })
		var wg sync.WaitGroup
		for _, i := range idx {
			wg.Go(func() {
				if err := st.restartProc(d.ctx, i, restartReady); err != nil {
					d.set(func() { r.fail("restart: %v", err) })
				}
			})
		}
		wg.Wait()
		d.set(func() {
			if len(r.errs) == 0 {
				r.ready = now()
			}
		})
		if d.sc.KillProcess(f.Target) == "recorder" {
			d.measureCatchUp(r)
		}

	case scenario.FaultKafkaFreeze:
		d.set(func() { r.start = now() })
		if err := st.broker.Signal(syscall.SIGSTOP); err != nil {
			d.set(func() { r.fail("SIGSTOP the broker: %v", err) })
		}
		d.sleepUntil(end)
		if err := st.broker.Signal(syscall.SIGCONT); err != nil {
			d.set(func() { r.fail("SIGCONT the broker: %v", err) })
		}
		d.set(func() { r.end = now(); r.ready = r.end })

	case scenario.FaultKafkaRestart:
		d.set(func() { r.start = now() })
		if err := st.broker.End(f.Signal == "kill"); err != nil {
			d.set(func() { r.fail("end the broker: %v", err) })
		}
		d.sleepUntil(end)
		d.set(func() { r.end = now() })
		if err := st.broker.Start(d.ctx); err != nil {
			d.set(func() { r.fail("restart the broker: %v", err) })
		} else {
			d.set(func() { r.ready = now() })
		}

	case scenario.FaultClickHouseStop:
		d.set(func() { r.start = now() })
		if err := st.stopClickHouse(); err != nil {
			d.set(func() { r.fail("stop ClickHouse: %v", err) })
		}
		d.sleepUntil(end)
		d.set(func() { r.end = now() })
		if err := st.startClickHouseAgain(d.ctx); err != nil {
			d.set(func() { r.fail("restart ClickHouse: %v", err) })
			return
		}
		d.set(func() { r.ready = now() })
		d.measureCatchUp(r)

	case scenario.FaultAPNs503, scenario.FaultAPNs429:
		o := &apnsmock.Override{Status: http.StatusServiceUnavailable, Fraction: f.Fraction}
		if f.Kind == scenario.FaultAPNs429 {
			o = &apnsmock.Override{Status: http.StatusTooManyRequests, Fraction: f.Fraction, RetryAfter: f.RetryAfter.D()}
		}
		if err := st.mocks.setAPNsOverride(d.ctx, o); err != nil {
			d.set(func() { r.fail("APNs mock override: %v", err) })
			return
		}
		d.set(func() { r.start = now() })
		d.sleepUntil(end)
		st.mocks.setAPNsOverride(d.ctx, nil)
		d.set(func() { r.end = now(); r.ready = r.end })
	}
}

// measureCatchUp waits until ClickHouse's events table holds as many rows as push.events has
// records now (everything accepted up to ClickHouse's or the recorder's return) and records
// how long after the fault's end that was.
func (d *faultDriver) measureCatchUp(r *faultRun) {
	target, err := kafkatopic.Count(d.ctx, d.st.kafkaAddr, topics.Events)
	if err != nil {
		d.set(func() { r.fail("count push.events: %v", err) })
		return
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{d.st.chTCP}, Auth: clickhouse.Auth{Database: d.st.database}})
	if err != nil {
		d.set(func() { r.fail("ClickHouse: %v", err) })
		return
	}
	defer conn.Close()
	deadline := time.Now().Add(catchUpLimit)
	var rows uint64
	for {
		qctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
		err := conn.QueryRow(qctx, "SELECT count() FROM events").Scan(&rows)
		cancel()
		if err == nil && int64(rows) >= target {
			d.set(func() { r.catchUp, r.caughtUp = time.Since(r.end), true })
			return
		}
		if time.Now().After(deadline) || d.ctx.Err() != nil {
			d.set(func() {
				r.catchUp = time.Since(r.end)
				r.fail("the recorder had written %d of %d events %s after ClickHouse was back (last error %v)", rows, target, catchUpLimit, err)
			})
			return
		}
		time.Sleep(time.Second)
	}
}
