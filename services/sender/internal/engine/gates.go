package engine

import (
	"context"
	"sync"
	"time"
)

// breaker pauses the clients (app and environment) that hit a configuration error: while
// paused nobody calls the provider for them; when the pause ends, one wake probes, and the
// others wait for its answer, so a broken key costs one request per pause, not one per wake.
type breaker struct {
	pause time.Duration
	now   func() time.Time

	mu    sync.Mutex
	state map[string]*gate
}

type gate struct {
	until   time.Time     // paused until
	probing bool          // one wake is testing the client
	changed chan struct{} // closed on every change of until/probing
	reason  string        // the configuration error that paused it
}

func newBreaker(pause time.Duration, now func() time.Time) *breaker {
	return &breaker{pause: pause, now: now, state: map[string]*gate{}}
}

// wait blocks while key is paused or being probed. It reports whether the caller is the probe
// (and must call report with the outcome). It returns ctx's error if ctx ends first.
func (b *breaker) wait(ctx context.Context, key string) (probe bool, err error) {
	for {
		b.mu.Lock()
		g := b.state[key]
		if g == nil { // never paused, or recovered
			b.mu.Unlock()
			return false, nil
		}
		wait := g.until.Sub(b.now())
		if wait <= 0 && !g.probing {
			g.probing = true
			b.mu.Unlock()
			return true, nil
		}
		changed := g.changed
		b.mu.Unlock()
		if err := sleepOr(ctx, wait, changed); err != nil {
			return false, err
		}
	}
}

// sleepOr waits d (forever when d <= 0) or until wake is closed; it returns ctx's error if ctx
// ends first.
func sleepOr(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
		return nil
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// report ends a probe (or records an error outside a probe): a configuration error pauses key
// (again); anything else from a probe clears the pause. abandoned probes (shutdown) hand over to
// the next waiter.
func (b *breaker) report(key string, probe, configErr, abandoned bool, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.state[key]
	switch {
	case configErr:
		if g == nil {
			g = &gate{changed: make(chan struct{})}
			b.state[key] = g
		}
		g.until, g.reason = b.now().Add(b.pause), reason
	case g == nil || !probe:
		return
	case abandoned:
	default:
		delete(b.state, key)
	}
	if probe {
		g.probing = false
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// paused lists the keys paused right now with their reasons (for the gauge).
func (b *breaker) paused() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.state))
	for k, g := range b.state {
		out[k] = g.reason
	}
	return out
}

// holds keeps devices that APNs rate-limited (429 TooManyRequests) quiet until a time.
type holds struct {
	now func() time.Time

	mu    sync.Mutex
	until map[string]time.Time
}

func newHolds(now func() time.Time) *holds {
	return &holds{now: now, until: map[string]time.Time{}}
}

// hold keeps device quiet until t (never shortening an existing hold).
func (h *holds) hold(device string, t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.After(h.until[device]) {
		h.until[device] = t
	}
	if len(h.until) > 4096 { // forget expired holds of devices not seen again
		now := h.now()
		for d, u := range h.until {
			if !u.After(now) {
				delete(h.until, d)
			}
		}
	}
}

// remaining is how long device must still stay quiet.
func (h *holds) remaining(device string) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	u, ok := h.until[device]
	if !ok {
		return 0
	}
	d := u.Sub(h.now())
	if d <= 0 {
		delete(h.until, device)
	}
	return d
}
