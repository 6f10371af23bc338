package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
	"github.com/wakepush/wakepush/schemas/records"
	"github.com/wakepush/wakepush/schemas/topics"
)

// scaleSlack is how much later than acceptance + min_interval a covering wake may be created in
// TestScale. It covers what DESIGN calls processing time, which here includes a rebalance: a
// partition's pending trailing wakes are not sent early when it moves (the next owner restores
// and re-derives them), so a wake due while the partition changes hands goes out when the new
// owner is done restoring (about half a second here). The test logs the largest delay it saw.
const scaleSlack = 4 * time.Second

// TestScale runs the built binary 1 → 2 → 1 instances (a second instance joins; then the first
// one is stopped with SIGTERM) while a stream of events for many devices goes on (bursts, hot
// devices, urgent events, re-delivered event ids), and checks the invariants of DESIGN §5 on the
// real push.wakes topic against every event produced:
//
//   - no loss: every event is covered by a wake of its device created at or after its acceptance
//     and at most min_interval + scaleSlack later;
//   - rate: two non-urgent wakes of a device are at least min_interval apart (no tolerance: every
//     instance runs on this machine's clock, and a restored interval starts at the created_at
//     read back from push.wakes);
//   - no duplicate bursts: every event is covered by exactly one wake (one wake id), so nothing
//     the rebalances replayed was woken again;
//   - every wake lists all its events (event_count ≤ 64 here), so the checks are complete.
func TestScale(t *testing.T) {
	t.Parallel()
	broker := stacktest.Kafka(t)
	bin := stacktest.Build(t, "github.com/wakepush/wakepush/services/coalescer")
	const interval = 2 * time.Second
	appsFile := writeAppsFile(t, interval)
	evs := newEvents(t, broker)
	app := appOf(interval)

	var mu sync.Mutex
	var wakes []*wakepushv1.Wake
	ch := watch(t, broker, topics.Wakes)
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for r := range ch {
			mu.Lock()
			wakes = append(wakes, r.msg.(*wakepushv1.Wake))
			mu.Unlock()
		}
	}()
	wakeCount := func() int { mu.Lock(); defer mu.Unlock(); return len(wakes) }

	start := func(name string) *stacktest.Process {
		admin := stacktest.FreeAddr(t)
		p := stacktest.StartProcess(t, name, bin, nil, testArgs(broker, appsFile, admin, "-log-level=info")...)
		p.WaitHTTP("http://"+admin+"/readyz", 30*time.Second)
		return p
	}
	count := func(p *stacktest.Process, substr string) int {
		n := 0
		for _, l := range p.Lines() {
			if strings.Contains(l, substr) {
				n++
			}
		}
		return n
	}
	waitCount := func(p *stacktest.Process, substr string, n int, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for count(p, substr) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: fewer than %d lines with %q within %s", p.Name, n, substr, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	a := start("coalescer-a")
	waitCount(a, "partition state restored", testPartitions, 30*time.Second)

	// The stream: every 25 ms a few events for random devices among 300 cold and 5 hot ones; 3%
	// urgent; 5% re-deliveries of an event already sent (same id, as a server retry would).
	devices := make([]string, 305)
	for i := range devices {
		devices[i] = fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, uint64(i))
	}
	var sent []*wakepushv1.PushEvent
	sends := 0
	stream, stopStream := context.WithCancel(context.Background())
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stream.Done():
				return
			case <-tick.C:
			}
			var batch []*wakepushv1.PushEvent
			for range 1 + rng.IntN(5) {
				switch {
				case len(sent) > 0 && rng.IntN(100) < 5:
					batch = append(batch, sent[rng.IntN(len(sent))])
				default:
					d := devices[rng.IntN(300)]
					if rng.IntN(100) < 30 {
						d = devices[300+rng.IntN(5)]
					}
					ev := event(records.NewID(), d, app, rng.IntN(100) < 3)
					sent = append(sent, ev)
					batch = append(batch, ev)
				}
			}
			evs.send(context.Background(), batch...)
			sends += len(batch)
		}
	}()

	// 1 → 2: b joins; the group rebalances and each instance owns one partition.
	time.Sleep(3 * time.Second)
	b := start("coalescer-b")
	waitCount(b, "partition state restored", 1, 30*time.Second)
	waitCount(a, "partition released", testPartitions, 30*time.Second)
	time.Sleep(3 * time.Second)
	// 2 → 1: a leaves (SIGTERM); b owns both partitions again.
	if err := a.Stop(); err != nil {
		t.Errorf("SIGTERM a: %v", err)
	}
	waitCount(b, "partition state restored", 1+testPartitions, 30*time.Second)
	time.Sleep(3 * time.Second)
	stopStream()
	<-streamDone

	// Let every trailing wake go out, then until push.wakes is quiet.
	time.Sleep(interval + time.Second)
	for n := -1; n != wakeCount(); {
		n = wakeCount()
		time.Sleep(interval)
	}
	if err := b.Stop(); err != nil {
		t.Errorf("SIGTERM b: %v", err)
	}
	mu.Lock()
	got := slices.Clone(wakes)
	mu.Unlock()

	if !slices.ContainsFunc(b.Lines(), func(l string) bool {
		return strings.Contains(l, "partitions=[0]") || strings.Contains(l, "partitions=[1]")
	}) {
		t.Error("b never owned a single partition: the test did not run with two instances")
	}
	t.Logf("%d records sent (with re-deliveries)", sends)
	checkScaleInvariants(t, interval, sent, got)
}

// checkScaleInvariants checks no loss, rate and no duplicate bursts of wakes against the events
// sent (see TestScale).
func checkScaleInvariants(t *testing.T, interval time.Duration, sent []*wakepushv1.PushEvent, wakes []*wakepushv1.Wake) {
	t.Helper()
	events := map[string]*wakepushv1.PushEvent{}
	for _, ev := range sent {
		events[ev.Id] = ev
	}
	coveredBy := map[string]string{} // event id → wake id
	byID := map[string]*wakepushv1.Wake{}
	byDevice := map[string][]*wakepushv1.Wake{}
	reasons := map[wakepushv1.WakeReason]int{}
	identical := 0
	var maxDelay time.Duration
	var worst string
	for _, w := range wakes {
		if prev := byID[w.Id]; prev != nil {
			// Same id: a replay re-emitted the same wake; the sender drops the copy.
			identical++
			continue
		}
		byID[w.Id] = w
		reasons[w.Reason]++
		byDevice[w.DeviceId] = append(byDevice[w.DeviceId], w)
		if int(w.EventCount) != len(w.EventIds) {
			t.Errorf("wake %s covers %d events but lists %d: the test cannot check it", w.Id, w.EventCount, len(w.EventIds))
		}
		created := w.CreatedAt.AsTime()
		for _, id := range w.EventIds {
			ev := events[id]
			if ev == nil {
				t.Errorf("wake %s covers an event that was never sent: %s", w.Id, id)
				continue
			}
			if other, ok := coveredBy[id]; ok {
				t.Errorf("duplicate burst: event %s is covered by wakes %s and %s", id, other, w.Id)
			}
			coveredBy[id] = w.Id
			if ev.DeviceId != w.DeviceId {
				t.Errorf("wake %s of device %s covers event %s of device %s", w.Id, w.DeviceId, id, ev.DeviceId)
			}
			accepted := ev.AcceptedAt.AsTime()
			delay := created.Sub(accepted)
			if delay > maxDelay {
				maxDelay = delay
				worst = fmt.Sprintf("event accepted %s, %s wake created %s", accepted.Format(time.StampMilli), w.Reason, created.Format(time.StampMilli))
			}
			if delay < 0 || delay > interval+scaleSlack {
				t.Errorf("no loss: event %s accepted at %s is covered by wake %s created %s later (want 0 … %s)",
					id, accepted.Format(time.StampMicro), w.Id, delay, interval+scaleSlack)
			}
		}
	}
	for id, ev := range events {
		if _, ok := coveredBy[id]; !ok {
			t.Errorf("loss: event %s of device %s (accepted %s, urgent %t) is covered by no wake", id, ev.DeviceId, ev.AcceptedAt.AsTime().Format(time.StampMicro), ev.Urgent)
		}
	}
	minGap := time.Duration(1<<63 - 1)
	for dev, ws := range byDevice {
		slices.SortFunc(ws, func(a, b *wakepushv1.Wake) int { return a.CreatedAt.AsTime().Compare(b.CreatedAt.AsTime()) })
		var last *wakepushv1.Wake
		for _, w := range ws {
			if w.Reason == wakepushv1.WakeReason_WAKE_REASON_URGENT {
				continue
			}
			if last != nil {
				gap := w.CreatedAt.AsTime().Sub(last.CreatedAt.AsTime())
				minGap = min(minGap, gap)
				if gap < interval {
					t.Errorf("rate: device %s got non-urgent wakes %s (%s) and %s (%s) %s apart, want >= %s",
						dev, last.Id, last.Reason, w.Id, w.Reason, gap, interval)
				}
			}
			last = w
		}
	}
	t.Logf("%d events, %d wakes (%d leading, %d trailing, %d urgent; %d identical re-emissions) for %d devices; "+
		"longest acceptance→wake %s (%s); shortest non-urgent gap %s",
		len(events), len(byID), reasons[wakepushv1.WakeReason_WAKE_REASON_LEADING], reasons[wakepushv1.WakeReason_WAKE_REASON_TRAILING],
		reasons[wakepushv1.WakeReason_WAKE_REASON_URGENT], identical, len(byDevice), maxDelay.Round(time.Millisecond), worst, minGap)
	if len(events) < 500 || reasons[wakepushv1.WakeReason_WAKE_REASON_TRAILING] == 0 {
		t.Errorf("the stream was too small to prove anything")
	}
}
