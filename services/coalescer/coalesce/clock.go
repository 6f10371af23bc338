package coalesce

import "time"

// Clock is the time source of whatever drives an Engine: the engine itself never reads a clock.
// Tests substitute a fake.
type Clock interface {
	Now() time.Time
	// NewTimer returns a stopped-or-running timer that fires after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a resettable one-shot timer.
type Timer interface {
	C() <-chan time.Time
	// Reset makes the timer fire after d, dropping an earlier pending fire (Go ≥ 1.23 semantics).
	Reset(d time.Duration)
	Stop()
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (SystemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time   { return t.t.C }
func (t systemTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t systemTimer) Stop()                 { t.t.Stop() }
