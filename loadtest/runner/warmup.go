package runner

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/wakepush/wakepush/loadtest/analysis"
	"github.com/wakepush/wakepush/loadtest/kafkatopic"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

// recorderGroup is the recorder's consumer group (its default WAKEPUSH_RECORDER_GROUP): once it
// has committed push.registrations to the end, the registrations have crossed the pipeline.
const recorderGroup = "wakepush-recorder"

// waitRegistrations waits (up to limit) until the recorder has committed every registration
// record: registering the devices makes the sender, ingest and the recorder read and store
// every registration, and the load phase should not start while they are still at it.
func waitRegistrations(ctx context.Context, st *stack, limit time.Duration) (time.Duration, error) {
	kc := kafkatopic.Open(st.kafkaAddr)
	defer kc.Close()
	began := time.Now()
	for {
		lag, err := kc.Lag(ctx, recorderGroup, "push.registrations")
		if err == nil && lag == 0 {
			return time.Since(began), nil
		}
		if time.Since(began) > limit {
			return time.Since(began), fmt.Errorf("the recorder had %d registrations left to consume after %s (%v)", lag, limit, err)
		}
		select {
		case <-ctx.Done():
			return time.Since(began), ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// warmUp sends the warm-up schedule (scenario.Warmup) to the warm-up devices (registered, regs),
// open loop like the load phase, waits for its answers and then for the settle pause. Nothing
// it measures counts in the load phase.
func warmUp(ctx context.Context, st *stack, sc *scenario.Scenario, wp *scenario.WarmupPlan, regs []registration) (*report.Warmup, error) {
	w := &report.Warmup{Duration: sc.Warmup.Duration.D(), Rate: sc.Warmup.Rate, Devices: len(wp.Devices), Sent: len(wp.Publishes),
		Settle: sc.Warmup.Settle.D(), Conditions: map[string]int{}}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	watch := st.cpuWatch()
	n := len(wp.Publishes)
	intended := make([]time.Time, n)
	answered := make([]time.Time, n)
	accepted := make([]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, sc.MaxInFlight)
	start := time.Now().Add(100 * time.Millisecond)
	w.Started = start
	cpu0 := watch.sample()
	rr := 0
	for i, pub := range wp.Publishes {
		intended[i] = start.Add(pub.At)
		if d := time.Until(intended[i]); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		st.publish(ctx, client, &rr, "w", pub, wp.Devices[pub.Device], regs[pub.Device], func(at time.Time, ok bool, cond string) {
			answered[i], accepted[i] = at, ok
			if !ok {
				mu.Lock()
				w.Conditions[cond]++
				mu.Unlock()
			}
			<-sem
			wg.Done()
		})
	}
	if d := time.Until(start.Add(sc.Warmup.Duration.D())); d > 0 {
		time.Sleep(d)
	}
	cpu1 := watch.sample()
	w.CPU = watch.cores(cpu0, cpu1)
	w.MachineCores = watch.machine(cpu0, cpu1)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("warm-up: %d publishes still unanswered 60 s after it", len(sem))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var all, first, last []time.Duration
	lastAnswer := start
	end := start.Add(sc.Warmup.Duration.D())
	for i := range n {
		if answered[i].After(lastAnswer) {
			lastAnswer = answered[i]
		}
		if !accepted[i] {
			continue
		}
		w.Accepted++
		l := answered[i].Sub(intended[i])
		all = append(all, l)
		switch {
		case intended[i].Before(start.Add(time.Second)):
			first = append(first, l)
		case !intended[i].Before(end.Add(-time.Second)):
			last = append(last, l)
		}
	}
	w.Ack, w.AckFirstSecond, w.AckLastSecond = analysis.Summarize(all), analysis.Summarize(first), analysis.Summarize(last)
	// Settle: the warm-up's events stay out of the ClickHouse window (it opens 2 s before the
	// load phase), and the pipeline finishes what the warm-up left.
	select {
	case <-time.After(time.Until(lastAnswer.Add(sc.Warmup.Settle.D()))):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return w, nil
}

// conditionList renders refusal conditions sorted, for logs.
func conditionList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf(" %s×%d", k, m[k])
	}
	return s
}
