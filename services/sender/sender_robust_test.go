package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/mocks/apnsmock"
	wakepushv1 "github.com/wakepush/wakepush/schemas/gen/wakepushv1"
)

// Half the pushes stall (APNs never answers the stream): each times out after the APNs
// deadline, is retried, and every wake is delivered exactly once. Afterwards the sender's
// goroutines are gone (stalled streams, connections and retry timers do not leak).
func TestStallsTimeOutAndRetryWithoutLeak(t *testing.T) {
	f := newFixture(t, "-sender-apns-timeout=300ms", "-sender-max-attempts=20", "-sender-apns-idle-conn-timeout=2s")
	const n = 40
	devs := make([]string, n)
	for i := range n {
		devs[i] = f.register(token(100+i), time.Now().Add(-time.Hour))
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	base := runtime.NumGoroutine()
	baseSender, _ := senderGoroutines()
	stop := f.start()
	peak := 0
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak = max(peak, runtime.NumGoroutine())
			select {
			case <-sampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	f.mock.SetFaults(apnsmock.Faults{RateStall: 0.5})
	for i, d := range devs {
		f.wake(d, fmt.Sprintf("stall-%d", i))
	}
	f.eventually("every wake accepted", 60*time.Second, func() bool {
		for i := range n {
			if !f.has(fmt.Sprintf("stall-%d", i), wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) {
				return false
			}
		}
		return true
	})
	timeouts := 0
	for i := range n {
		timedOut := 0
		for _, d := range f.deliveriesOf(fmt.Sprintf("stall-%d", i)) {
			if d.GetOutcome() == wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY && d.GetReason() == "timeout" {
				timedOut++
			}
		}
		timeouts += timedOut
		// Once per wake, except that a push the mock accepted but whose answer came after the
		// 300 ms deadline (a loaded machine) timed out and was sent again, as it would be to
		// APNs: each extra accepted push must be such a timed-out attempt.
		if got := len(f.mock.PushesFor(token(100 + i))); got < 1 || got > 1+timedOut {
			t.Errorf("device %d: %d pushes accepted after %d timed-out attempts, want 1 (+ at most one per timeout)", i, got, timedOut)
		}
	}
	if timeouts == 0 {
		t.Error("no RETRY/timeout records: nothing stalled?")
	}
	f.eventually("all wakes committed", 10*time.Second, func() bool { return f.committed() == n })
	f.mock.SetFaults(apnsmock.Faults{})
	close(sampling)
	<-sampled
	running, _ := senderGoroutines()
	if running <= baseSender {
		t.Errorf("%d sender goroutines while running, %d before: the count sees nothing", running, baseSender)
	}
	stop()
	f.mock.DropConnections()
	// The process also runs the kfake broker and the fixture's followers, whose connection
	// goroutines come and go; the sender's own are those running its code or its HTTP/2
	// clients.
	var now int
	var dump string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if now, dump = senderGoroutines(); now <= baseSender {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sender goroutines: %d before start, %d after stop:\n%s", baseSender, now, dump)
		}
	}
	if peak > base+3*256 { // default concurrency 256: one goroutine per wake plus its HTTP/2 stream
		t.Errorf("goroutines peaked at %d (baseline %d)", peak, base)
	}
	t.Logf("%d timeouts retried; goroutines: %d before start (%d sender), peak %d, %d sender while running, %d after stop", timeouts, base, baseSender, peak, running, now)
}

// 429 TooManyRequests for one device holds that device (its next attempt waits for the
// backoff) while wakes of the other devices flow.
func TestPerDevice429HoldsOnlyThatDevice(t *testing.T) {
	f := newFixture(t, "-sender-retry-min=800ms", "-sender-retry-max=2s", "-sender-max-attempts=10")
	f.mock.SetFaults(apnsmock.Faults{PerDeviceLimit: 1, PerDeviceWindow: 1500 * time.Millisecond})
	busy := f.register(token(200), time.Now().Add(-time.Hour))
	others := make([]string, 10)
	for i := range others {
		others[i] = f.register(token(201+i), time.Now().Add(-time.Hour))
	}
	f.start()
	f.wake(busy, "busy-1")
	f.eventually("first busy wake accepted", 20*time.Second, func() bool {
		return f.has("busy-1", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED)
	})
	f.wake(busy, "busy-2")
	f.wake(busy, "busy-3")
	f.eventually("a 429 for the busy device", 20*time.Second, func() bool { return len(f.deliveriesOf("busy-2"))+len(f.deliveriesOf("busy-3")) > 0 })
	held := time.Now()
	for i, d := range others {
		f.wake(d, fmt.Sprintf("other-%d", i))
	}
	f.eventually("other devices accepted", 20*time.Second, func() bool {
		for i := range others {
			if !f.has(fmt.Sprintf("other-%d", i), wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) {
				return false
			}
		}
		return true
	})
	othersDone := time.Since(held)
	f.eventually("busy wakes accepted", 30*time.Second, func() bool {
		return f.has("busy-2", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED) &&
			f.has("busy-3", wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_ACCEPTED)
	})
	busyDone := time.Since(held)
	if othersDone >= busyDone {
		t.Errorf("others took %v, the held device %v: the others waited for it", othersDone, busyDone)
	}
	// While the device is held neither of its wakes calls APNs: attempts are spaced by the
	// backoff (≥ 400 ms with retry-min 800ms and jitter over the upper half), not hammered.
	var at []time.Time
	for _, id := range []string{"busy-2", "busy-3"} {
		for _, d := range f.deliveriesOf(id) {
			if d.GetOutcome() == wakepushv1.DeliveryOutcome_DELIVERY_OUTCOME_RETRY {
				if d.GetReason() != "TooManyRequests" {
					t.Errorf("retry reason %q", d.GetReason())
				}
				at = append(at, d.GetCreatedAt().AsTime())
			}
		}
	}
	if len(at) == 0 {
		t.Fatal("no 429 retries recorded")
	}
	if n := len(at); n > 8 {
		t.Errorf("%d 429s for one device: not backing off", n)
	}
	t.Logf("others done after %v, held device after %v, %d 429s", othersDone, busyDone, len(at))
}

// senderGoroutines counts goroutines running the sender's code or an HTTP client connection
// (APNs/FCM), leaving out the test's own helpers; it returns their stacks too.
func senderGoroutines() (int, string) {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var out strings.Builder
	for _, g := range strings.Split(string(buf), "\n\n") {
		mine := strings.Contains(g, "wakepush/services/sender") || strings.Contains(g, "x/net/http2") ||
			strings.Contains(g, "net/http.(*persistConn)") || strings.Contains(g, "net/http.(*http2") ||
			strings.Contains(g, "sideshow/apns2")
		test := strings.Contains(g, "(*fixture).") || strings.Contains(g, "senderGoroutines") ||
			strings.Contains(g, "testing.tRunner") || strings.Contains(g, "apnsmock") || strings.Contains(g, "fcmmock")
		if mine && !test {
			n++
			out.WriteString(g + "\n\n")
		}
	}
	return n, out.String()
}
