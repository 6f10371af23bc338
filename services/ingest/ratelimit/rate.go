package ratelimit

import (
	"fmt"
	"strconv"
	"strings"
)

// Rate is a token-bucket limit: PerSecond sustained, Burst at once. A Rate whose PerSecond is
// zero (or negative) is unlimited.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Unlimited reports whether r allows everything.
func (r Rate) Unlimited() bool { return r.PerSecond <= 0 }

// ParseRate parses "N/s[:burst]" (also /m, /h); "" or "0" means unlimited. Without a burst,
// the burst is N per second (at least 1).
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return Rate{}, nil
	}
	spec, burst, hasBurst := strings.Cut(s, ":")
	num, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/m or N/h, optionally :burst", s)
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || !(n > 0 && n <= 1e9) { // also refuses NaN and Inf
		return Rate{}, fmt.Errorf("rate %q: %q is not a positive number up to 1e9", s, num)
	}
	switch unit {
	case "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		return Rate{}, fmt.Errorf("rate %q: unit %q is not s, m or h", s, unit)
	}
	r := Rate{PerSecond: n, Burst: max(1, int(n))}
	if hasBurst {
		b, err := strconv.Atoi(burst)
		if err != nil || b < 1 {
			return Rate{}, fmt.Errorf("rate %q: burst %q is not a positive integer", s, burst)
		}
		r.Burst = b
	}
	return r, nil
}
