package scenario

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Warmup is the traffic the runner sends after registering the devices and before the load
// phase: a ramp from a tenth of the first step's rate up to it, to warm-up devices of their own
// (registered after the scenario's devices, on the same apps), through both paths. It opens what
// a service opens on first use (Kafka producer connections and partition metadata, the sender's
// HTTP/2 + TLS connections and provider tokens, the Go runtime's heaps and worker goroutines)
// so that the load phase measures a running pipeline, not its start. Its answers and wakes are
// reported on their own and never counted in the load phase: the scenario's devices stay idle
// until the load phase, so the oracle, the loss check and the ClickHouse cross-check see only
// the load phase's publishes.
type Warmup struct {
	// Off disables the warm-up: the load phase then starts on a cold pipeline.
	Off bool `yaml:"off" json:"off,omitempty"`
	// Duration of the warm-up traffic (default 10s).
	Duration Duration `yaml:"duration" json:"duration"`
	// Rate is the rate the ramp ends at (default: the scenario's rate, i.e. the first step's).
	Rate float64 `yaml:"rate" json:"rate"`
	// Devices is the number of warm-up devices (default: a tenth of the scenario's, 100…5000).
	Devices int `yaml:"devices" json:"devices"`
	// Settle is the pause between the warm-up's last answer and the load phase (default 3s,
	// at least 2s: the ClickHouse cross-check counts events from 2 s before the load phase).
	Settle Duration `yaml:"settle" json:"settle"`
}

// WarmupSettleMin is the shortest settle: the ClickHouse cross-check's window opens 2 s before
// the load phase, and no warm-up event may fall into it.
const WarmupSettleMin = 2 * time.Second

func (s *Scenario) warmupDefaults() {
	w := &s.Warmup
	if w.Off {
		return
	}
	if w.Duration == 0 {
		w.Duration = Duration(10 * time.Second)
	}
	if w.Rate == 0 {
		w.Rate = s.Rate
	}
	if w.Devices == 0 {
		w.Devices = min(max(s.Devices/10, 100), 5000)
	}
	if w.Settle == 0 {
		w.Settle = Duration(3 * time.Second)
	}
}

func (s *Scenario) validateWarmup(bad func(string, ...any)) {
	w := s.Warmup
	if w.Off {
		return
	}
	if w.Duration < 0 {
		bad("warmup.duration: must be > 0 (warmup.off: true disables the warm-up)")
	}
	if w.Rate < 0 || math.IsInf(w.Rate, 0) || math.IsNaN(w.Rate) {
		bad("warmup.rate: must be > 0 publishes/s, got %v", w.Rate)
	}
	if w.Devices < 1 || w.Devices > 1_000_000 {
		bad("warmup.devices: must be 1…1000000, got %d", w.Devices)
	}
	if w.Settle.D() < WarmupSettleMin {
		bad("warmup.settle: must be ≥ %s, got %s", WarmupSettleMin, w.Settle.D())
	}
}

// WarmupPlan is the expanded warm-up: its own devices and a schedule of steady publishes
// (never urgent) to them.
type WarmupPlan struct {
	Devices   []Device  // Index is the warm-up device's index (0-based, among the warm-up devices)
	Publishes []Publish // At from the warm-up's start; Device indexes Devices
}

// ExpandWarmup generates the warm-up devices and schedule (nil when the warm-up is off). The
// devices' tokens differ from every scenario device's: APNs tokens carry 1<<63 in the index
// field, FCM tokens a "w" before the index. The publishes are evenly spaced at a rate rising
// linearly from Rate/10 to Rate.
func (s *Scenario) ExpandWarmup() *WarmupPlan {
	w := s.Warmup
	if w.Off || w.Duration <= 0 || w.Rate <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0x3a3b0f))
	p := &WarmupPlan{Devices: make([]Device, w.Devices)}
	for i := range p.Devices {
		// Tokens apart from the load phase's devices: the top bit of the index (APNs), "w" (FCM).
		p.Devices[i] = s.device(rng, i, uint64(1)<<63|uint64(i), fmt.Sprint("w", i))
	}
	// rate(t) = r0 + (r1-r0)·t/T; the n-th publish goes out when the integral reaches n.
	dur := w.Duration.D().Seconds()
	r0, r1 := w.Rate/10, w.Rate
	n := int((r0 + r1) / 2 * dur)
	for k := range n {
		// Solve r0·t + (r1-r0)·t²/(2T) = k for t.
		a := (r1 - r0) / (2 * dur)
		t := float64(k) / r0
		if a > 0 {
			t = (-r0 + math.Sqrt(r0*r0+4*a*float64(k))) / (2 * a)
		}
		p.Publishes = append(p.Publishes, Publish{At: time.Duration(t * float64(time.Second)),
			Device: int32(rng.IntN(len(p.Devices))), Account: int8(rng.IntN(s.AccountsPerDevice)), Kind: Steady,
			HTTP: rng.Float64() < s.HTTPShare})
	}
	return p
}
