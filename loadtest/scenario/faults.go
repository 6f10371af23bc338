package scenario

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault kinds.
const (
	// FaultKill SIGKILLs a service process (Target) and starts it again Duration later, with
	// the same configuration (addresses, consumer group).
	FaultKill = "kill"
	// FaultKafkaFreeze stops the Kafka broker process (SIGSTOP) for Duration, then resumes it
	// (SIGCONT): connections stay open and nothing answers, like a broker stuck in a long GC or
	// on a hung disk.
	FaultKafkaFreeze = "kafka-freeze"
	// FaultKafkaRestart ends the broker (Signal: kill = SIGKILL, the broker fsyncs every
	// produced batch; term = SIGTERM, it persists its state on the way out) and starts it again
	// Duration later on the same address and data directory.
	FaultKafkaRestart = "kafka-restart"
	// FaultClickHouseStop stops ClickHouse for Duration and starts it again on the same data
	// directory and ports. Delivery must not notice; the recorder catches up afterwards.
	FaultClickHouseStop = "clickhouse-stop"
	// FaultAPNs503 makes the APNs mock answer Fraction of the pushes 503 ServiceUnavailable
	// for Duration.
	FaultAPNs503 = "apns-503"
	// FaultAPNs429 makes the APNs mock answer Fraction of the pushes 429 TooManyRequests, with
	// Retry-After when RetryAfter is set, for Duration.
	FaultAPNs429 = "apns-429"
)

// FaultKinds lists the kinds a scenario may use.
var FaultKinds = []string{FaultKill, FaultKafkaFreeze, FaultKafkaRestart, FaultClickHouseStop, FaultAPNs503, FaultAPNs429}

// Fault is one fault the runner injects during the load phase.
type Fault struct {
	// At is when the fault starts, from the start of the load phase.
	At Duration `yaml:"at" json:"at"`
	// Kind is one of FaultKinds.
	Kind string `yaml:"kind" json:"kind"`
	// Target is the process a kill hits: ingest (every ingest process), recorder,
	// coalescer-N or sender-N (N from 1 to instances; plain coalescer or sender with one
	// instance). Other kinds have no target.
	Target string `yaml:"target" json:"target,omitempty"`
	// Duration is how long the fault lasts: the downtime of a kill, kafka-restart or
	// clickhouse-stop, the freeze, the storm.
	Duration Duration `yaml:"duration" json:"duration"`
	// Fraction is the share of pushes a storm answers with its status (default 1: all).
	Fraction float64 `yaml:"fraction" json:"fraction,omitempty"`
	// RetryAfter is the Retry-After an apns-429 storm sends (0: none).
	RetryAfter Duration `yaml:"retry_after" json:"retry_after,omitempty"`
	// Signal ends the broker in a kafka-restart: kill (default) or term.
	Signal string `yaml:"signal" json:"signal,omitempty"`
	// MaxRecovery bounds the time from the fault's end until the pipeline is healthy again
	// (see Recovery); a fault that takes longer fails the run. Events accepted from one
	// interval before the fault until its end + MaxRecovery get their wake deadline moved
	// to end + MaxRecovery + min_interval + slack (they may wait for the recovery, they may
	// not be lost). Default per kind: DefaultMaxRecovery.
	MaxRecovery Duration `yaml:"max_recovery" json:"max_recovery"`
}

// End is when the fault ends, from the start of the load phase.
func (f Fault) End() time.Duration { return f.At.D() + f.Duration.D() }

// Name is a short label: "kill coalescer-1", "apns-503 50%".
func (f Fault) Name() string {
	s := f.Kind
	if f.Target != "" {
		s += " " + f.Target
	}
	if (f.Kind == FaultAPNs503 || f.Kind == FaultAPNs429) && f.Fraction < 1 {
		s += " " + strconv.FormatFloat(100*f.Fraction, 'f', -1, 64) + "%"
	}
	if f.Kind == FaultKafkaRestart {
		s += " (" + f.Signal + ")"
	}
	return s
}

// DefaultMaxRecovery is each kind's default bound on its recovery time. Generous: they must
// hold on a loaded 2-core machine. A killed coalescer or sender keeps its partitions until its
// consumer-group session times out (30 s) unless its restart rejoins first, and the new owner
// restores before it consumes; a frozen or restarted broker makes every client reconnect and
// every group rebalance; a storm's wakes wait for the sender's retry backoff (up to 8 s
// between the 4th and 5th attempt).
var DefaultMaxRecovery = map[string]time.Duration{
	FaultKill:           90 * time.Second,
	FaultKafkaFreeze:    90 * time.Second,
	FaultKafkaRestart:   120 * time.Second,
	FaultClickHouseStop: 30 * time.Second,
	FaultAPNs503:        60 * time.Second,
	FaultAPNs429:        60 * time.Second,
}

// Instances is how many processes of the consumer-group services the runner starts (one
// consumer group each, so partitions move between them on a crash or a restart).
type Instances struct {
	Coalescer int `yaml:"coalescer" json:"coalescer"`
	Sender    int `yaml:"sender" json:"sender"`
}

// MaxInstances bounds Instances: the runner's topics have 4 partitions.
const MaxInstances = 4

// Recovery says when the pipeline counts as recovered from a fault: when the leading-edge
// lag (how long the oldest leading-edge or urgent event still waiting for its wake has been
// waiting, from its intended send time) has stayed at or under Threshold for Window.
type Recovery struct {
	Threshold Duration `yaml:"threshold" json:"threshold"`
	Window    Duration `yaml:"window" json:"window"`
}

// ServiceName is the process name of instance i (0-based) of n of a service: the service's
// own name when it runs once, else service-1 … service-n.
func ServiceName(service string, i, n int) string {
	if n == 1 {
		return service
	}
	return fmt.Sprintf("%s-%d", service, i+1)
}

// KillTargets lists the valid targets of a kill.
func (s *Scenario) KillTargets() []string {
	out := []string{"ingest", "recorder"}
	for _, svc := range []struct {
		name string
		n    int
	}{{"coalescer", s.Instances.Coalescer}, {"sender", s.Instances.Sender}} {
		if svc.n == 1 {
			out = append(out, svc.name)
		}
		for i := range svc.n {
			out = append(out, fmt.Sprintf("%s-%d", svc.name, i+1))
		}
	}
	return out
}

// KillProcess maps a kill target to the process name the runner gives it ("coalescer-1" of
// a single instance is "coalescer"); ingest stands for every ingest process.
func (s *Scenario) KillProcess(target string) string {
	for _, svc := range []struct {
		name string
		n    int
	}{{"coalescer", s.Instances.Coalescer}, {"sender", s.Instances.Sender}} {
		if svc.n == 1 && target == svc.name+"-1" {
			return svc.name
		}
	}
	return target
}

// HasFault reports whether the scenario injects a fault of one of the kinds.
func (s *Scenario) HasFault(kinds ...string) bool {
	return slices.ContainsFunc(s.Faults, func(f Fault) bool { return slices.Contains(kinds, f.Kind) })
}

func (s *Scenario) faultDefaults() {
	if s.Instances.Coalescer == 0 {
		s.Instances.Coalescer = 1
	}
	if s.Instances.Sender == 0 {
		s.Instances.Sender = 1
	}
	if s.Recovery.Threshold == 0 {
		s.Recovery.Threshold = Duration(2 * time.Second)
	}
	if s.Recovery.Window == 0 {
		s.Recovery.Window = Duration(10 * time.Second)
	}
	for i := range s.Faults {
		f := &s.Faults[i]
		if f.MaxRecovery == 0 {
			f.MaxRecovery = Duration(DefaultMaxRecovery[f.Kind])
		}
		switch f.Kind {
		case FaultAPNs503, FaultAPNs429:
			if f.Fraction == 0 {
				f.Fraction = 1
			}
		case FaultKafkaRestart:
			if f.Signal == "" {
				f.Signal = "kill"
			}
		}
	}
}

// resource is what a fault acts on; two faults on one resource must not overlap in time.
func (f Fault) resource(s *Scenario) string {
	switch f.Kind {
	case FaultKill:
		return "process " + s.KillProcess(f.Target)
	case FaultKafkaFreeze, FaultKafkaRestart:
		return "the Kafka broker"
	case FaultClickHouseStop:
		return "ClickHouse"
	case FaultAPNs503, FaultAPNs429:
		return "the APNs mock"
	}
	return ""
}

// validateFaults appends every problem of the instances, recovery and faults settings.
func (s *Scenario) validateFaults(bad func(format string, args ...any)) {
	if s.Instances.Coalescer < 1 || s.Instances.Coalescer > MaxInstances {
		bad("instances.coalescer: must be 1…%d, got %d", MaxInstances, s.Instances.Coalescer)
	}
	if s.Instances.Sender < 1 || s.Instances.Sender > MaxInstances {
		bad("instances.sender: must be 1…%d, got %d", MaxInstances, s.Instances.Sender)
	}
	if s.Recovery.Threshold < 0 || s.Recovery.Window < 0 {
		bad("recovery: threshold and window must be ≥ 0")
	}
	if len(s.Faults) > 0 && s.Ramp != nil {
		bad("faults: not with ramp (a fault would decide the search)")
	}
	targets := s.KillTargets()
	for i, f := range s.Faults {
		where := fmt.Sprintf("faults[%d] (%s)", i, f.Kind)
		if !slices.Contains(FaultKinds, f.Kind) {
			bad("faults[%d].kind: want one of %s, got %q", i, strings.Join(FaultKinds, ", "), f.Kind)
			continue
		}
		if f.At < 0 {
			bad("%s.at: must be ≥ 0, got %s", where, f.At.D())
		}
		if f.Duration < 0 || (f.Duration == 0 && f.Kind != FaultKill && f.Kind != FaultKafkaRestart) {
			bad("%s.duration: must be > 0 (≥ 0 for kill and kafka-restart), got %s", where, f.Duration.D())
		}
		if s.Duration > 0 && f.End() >= s.Duration.D() {
			bad("%s: ends at %s, not within the load phase (%s): recovery is measured under load", where, f.End(), s.Duration.D())
		}
		if f.MaxRecovery < 0 {
			bad("%s.max_recovery: must be ≥ 0", where)
		}
		if f.Kind == FaultKill {
			if !slices.Contains(targets, f.Target) {
				bad("%s.target: want one of %s, got %q", where, strings.Join(targets, ", "), f.Target)
			}
		} else if f.Target != "" {
			bad("%s.target: only kill has a target, got %q", where, f.Target)
		}
		storm := f.Kind == FaultAPNs503 || f.Kind == FaultAPNs429
		if storm && (f.Fraction <= 0 || f.Fraction > 1) {
			bad("%s.fraction: must be in (0,1], got %v", where, f.Fraction)
		}
		if !storm && f.Fraction != 0 {
			bad("%s.fraction: only apns-503 and apns-429 storms have a fraction", where)
		}
		if f.RetryAfter < 0 || (f.RetryAfter > 0 && f.Kind != FaultAPNs429) {
			bad("%s.retry_after: only an apns-429 storm sends Retry-After (≥ 0)", where)
		}
		if f.RetryAfter%Duration(time.Second) != 0 {
			bad("%s.retry_after: Retry-After is whole seconds, got %s", where, f.RetryAfter.D())
		}
		switch {
		case f.Kind == FaultKafkaRestart && f.Signal != "kill" && f.Signal != "term":
			bad("%s.signal: want kill or term, got %q", where, f.Signal)
		case f.Kind != FaultKafkaRestart && f.Signal != "":
			bad("%s.signal: only kafka-restart takes a signal", where)
		}
	}
	// Two faults on one resource at once make no sense (kill a process that is down, freeze a
	// broker that is being restarted, two storms fighting over the mock's answer).
	for i, a := range s.Faults {
		for j := i + 1; j < len(s.Faults); j++ {
			b := s.Faults[j]
			ra, rb := a.resource(s), b.resource(s)
			if ra == "" || ra != rb {
				continue
			}
			if a.At.D() <= b.End() && b.At.D() <= a.End() {
				bad("faults[%d] and faults[%d] overlap on %s ([%s, %s] and [%s, %s])", i, j, ra, a.At.D(), a.End(), b.At.D(), b.End())
			}
		}
	}
}
