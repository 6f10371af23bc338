package apnsmock

import (
	"math/rand/v2"
	"time"
)

// FixedLatency returns a Config.Latency function that always returns d.
func FixedLatency(d time.Duration) func() time.Duration {
	return func() time.Duration { return d }
}

// UniformLatency returns a Config.Latency function uniform in [min, max].
func UniformLatency(min, max time.Duration) func() time.Duration {
	if max <= min {
		return FixedLatency(min)
	}
	span := int64(max - min)
	return func() time.Duration { return min + time.Duration(rand.Int64N(span+1)) }
}

// ExponentialLatency returns a Config.Latency function of min plus an
// exponentially distributed delay with the given mean, capped at max (0: no
// cap) — a long-tailed shape closer to a real network than a uniform one.
func ExponentialLatency(min, mean, max time.Duration) func() time.Duration {
	return func() time.Duration {
		d := min + time.Duration(rand.ExpFloat64()*float64(mean))
		if max > 0 && d > max {
			d = max
		}
		return d
	}
}
