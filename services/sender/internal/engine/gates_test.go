package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// After a configuration error, nobody passes during the pause; then exactly one probe passes
// and the others wait for its outcome.
func TestBreakerProbesOnce(t *testing.T) {
	b := newBreaker(50*time.Millisecond, time.Now)
	ctx := context.Background()
	if probe, err := b.wait(ctx, "app/production"); probe || err != nil {
		t.Fatalf("unpaused key: probe=%v err=%v", probe, err)
	}
	b.report("app/production", false, true, false, "InvalidProviderToken")
	if got := b.paused(); got["app/production"] != "InvalidProviderToken" {
		t.Fatalf("paused = %v", got)
	}
	start := time.Now()
	var probes, passed atomic.Int32
	var wg sync.WaitGroup
	probeIn := make(chan struct{})
	for range 5 {
		wg.Go(func() {
			probe, err := b.wait(ctx, "app/production")
			if err != nil {
				t.Error(err)
				return
			}
			if probe {
				probes.Add(1)
				close(probeIn)
				return
			}
			passed.Add(1)
		})
	}
	<-probeIn
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("probe passed after %v, want the 50ms pause", d)
	}
	time.Sleep(30 * time.Millisecond)
	if passed.Load() != 0 {
		t.Fatalf("%d waiters passed while the probe was out", passed.Load())
	}
	b.report("app/production", true, false, false, "") // the probe succeeded
	wg.Wait()
	if probes.Load() != 1 || passed.Load() != 4 {
		t.Errorf("probes=%d passed=%d, want 1 and 4", probes.Load(), passed.Load())
	}
	if len(b.paused()) != 0 {
		t.Errorf("still paused: %v", b.paused())
	}
}

func TestBreakerWaitHonoursContext(t *testing.T) {
	b := newBreaker(time.Hour, time.Now)
	b.report("k", false, true, false, "BadTopic")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.wait(ctx, "k"); err == nil {
		t.Error("wait on a paused key returned without error after ctx ended")
	}
}

func TestHolds(t *testing.T) {
	h := newHolds(time.Now)
	h.hold("d", time.Now().Add(time.Hour))
	h.hold("d", time.Now().Add(time.Minute)) // never shortened
	if r := h.remaining("d"); r < 59*time.Minute {
		t.Errorf("remaining %v, want about an hour", r)
	}
	if r := h.remaining("other"); r != 0 {
		t.Errorf("remaining of an unheld device %v", r)
	}
	h.hold("e", time.Now().Add(-time.Second))
	if r := h.remaining("e"); r > 0 {
		t.Errorf("expired hold remaining %v", r)
	}
}

func TestBackoff(t *testing.T) {
	e := &Engine{cfg: Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second}}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 40: time.Second} {
		for range 50 {
			if d := e.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
