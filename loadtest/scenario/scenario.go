// Package scenario reads and validates load-test scenario files (YAML) and expands a scenario
// into the deterministic, time-ordered list of publishes the runner sends.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a Go duration string ("90s", "1m30s") in YAML.
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as 10s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// D is the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Scenario is one load-test scenario file.
type Scenario struct {
	Name string `yaml:"name" json:"name"`
	// Seed makes the generated load reproducible.
	Seed uint64 `yaml:"seed" json:"seed"`
	// Duration of the load phase (publishes are sent during it).
	Duration Duration `yaml:"duration" json:"duration"`
	// Drain is how long the runner waits after the load phase for trailing wakes (default:
	// the longest min_interval + 5s).
	Drain Duration `yaml:"drain" json:"drain"`
	// Rate is the open-loop target rate in publishes per second (all shapes together,
	// excluding the mass-reconnect spike).
	Rate float64 `yaml:"rate" json:"rate"`
	// Devices is the number of phones; each has AccountsPerDevice XMPP accounts.
	Devices           int   `yaml:"devices" json:"devices"`
	AccountsPerDevice int   `yaml:"accounts_per_device" json:"accounts_per_device"`
	Apps              []App `yaml:"apps" json:"apps"`
	XMPP              XMPP  `yaml:"xmpp" json:"xmpp"`
	Shape             Shape `yaml:"shape" json:"shape"`
	// UrgentShare is the fraction of publishes marked urgent (calls).
	UrgentShare float64 `yaml:"urgent_share" json:"urgent_share"`
	// HTTPShare is the fraction of publishes sent through ingest's HTTP event API instead of
	// the XEP-0114 component.
	HTTPShare float64 `yaml:"http_share" json:"http_share"`
	// MaxInFlight bounds outstanding publishes (a safety valve; intended send times are still
	// the schedule's, so a stall shows up as latency).
	MaxInFlight int  `yaml:"max_in_flight" json:"max_in_flight"`
	Mock        Mock `yaml:"mock" json:"mock"`
	// MinAccepted is the share of publishes ingest must accept (result / 202) for the run to
	// pass (default 0.99). Refused publishes (wait answers under overload) are not loss, but a
	// run that refuses much of its load did not measure what it claims.
	MinAccepted float64 `yaml:"min_accepted" json:"min_accepted"`
	// Slack is the processing time allowed on top of min_interval before an event counts as
	// uncovered (default 5s).
	Slack Duration `yaml:"slack" json:"slack"`
	// Ramp, when set, makes the run a find-max-rate search: the offered rate starts at Rate
	// and steps up instead of staying fixed (see Ramp).
	Ramp *Ramp `yaml:"ramp" json:"ramp,omitempty"`
	// Instances of the coalescer and the sender (default 1 each; faults.go).
	Instances Instances `yaml:"instances" json:"instances"`
	// Faults are injected during the load phase (chaos; faults.go).
	Faults []Fault `yaml:"faults" json:"faults,omitempty"`
	// Recovery says when the pipeline counts as recovered from a fault (faults.go).
	Recovery Recovery `yaml:"recovery" json:"recovery"`
	// Warmup is traffic sent before the load phase, after the devices are registered, to
	// devices of its own (warmup.go). On by default.
	Warmup Warmup `yaml:"warmup" json:"warmup"`
}

// Ramp is the find-max-rate mode. The offered (open-loop) rate starts at the scenario's Rate
// and grows by Step every Every, up to Max. The runner stops raising it once the pipeline
// visibly cannot keep up (the scheduler falls behind or ingest refuses), and judges every
// step afterwards against the bounds: the highest step that met them all is the sustained
// maximum. The scenario's Duration, when set, caps the ramp.
type Ramp struct {
	Step  float64  `yaml:"step" json:"step"`
	Every Duration `yaml:"every" json:"every"`
	Max   float64  `yaml:"max" json:"max"`
	// MaxAckP99 bounds a step's publish answer p99, from the intended send time (default 1s).
	MaxAckP99 Duration `yaml:"max_ack_p99" json:"max_ack_p99"`
	// MaxLeadingP99 bounds a step's end-to-end leading-edge p99 (default 0: reported only).
	MaxLeadingP99 Duration `yaml:"max_leading_p99" json:"max_leading_p99"`
	// MinAccepted is the share of a step's publishes ingest must accept (default 0.999).
	MinAccepted float64 `yaml:"min_accepted" json:"min_accepted"`
	// MaxLag is how far behind its schedule the generator may fall before the ramp stops
	// (default 1s): a stalled pipeline holds max_in_flight answers and the schedule slips.
	MaxLag Duration `yaml:"max_lag" json:"max_lag"`
}

// Steps is the number of rate steps from start to Max.
func (r *Ramp) Steps(start float64) int {
	return int(math.Floor((r.Max-start)/r.Step+1e-9)) + 1
}

// App is a push app; devices are spread over apps by Share.
type App struct {
	ID          string   `yaml:"id" json:"id"`
	Platform    string   `yaml:"platform" json:"platform"` // apns or fcm
	Share       float64  `yaml:"share" json:"share"`
	MinInterval Duration `yaml:"min_interval" json:"min_interval"`
}

// XMPP describes the XMPP servers the runner impersonates.
type XMPP struct {
	// Servers is the number of XMPP servers (component ports ingest connects to).
	Servers int `yaml:"servers" json:"servers"`
	// ComponentJID is the App Server JID pattern; %d is the server's index (from 1).
	ComponentJID string `yaml:"component_jid" json:"component_jid"`
	// Domain is the pattern of the servers' own domains (the publishes' from); %d as above.
	Domain string `yaml:"domain" json:"domain"`
}

// Shape is the mix of event patterns; weights are relative shares of publishes.
type Shape struct {
	Steady     float64    `yaml:"steady" json:"steady"`
	GroupBurst GroupBurst `yaml:"group_burst" json:"group_burst"`
	RetryStorm RetryStorm `yaml:"retry_storm" json:"retry_storm"`
	// MassReconnect is a one-time spike on top of Rate.
	MassReconnect MassReconnect `yaml:"mass_reconnect" json:"mass_reconnect"`
}

// GroupBurst: one group-chat message publishes for Size devices within Spread.
type GroupBurst struct {
	Weight float64  `yaml:"weight" json:"weight"`
	Size   int      `yaml:"size" json:"size"`
	Spread Duration `yaml:"spread" json:"spread"`
}

// RetryStorm: the same publish re-sent Repeats times (the first included), Interval apart.
type RetryStorm struct {
	Weight   float64  `yaml:"weight" json:"weight"`
	Repeats  int      `yaml:"repeats" json:"repeats"`
	Interval Duration `yaml:"interval" json:"interval"`
}

// MassReconnect: at At, Fraction of all accounts publish within Window (servers flushing
// offline queues after a reconnect).
type MassReconnect struct {
	At       Duration `yaml:"at" json:"at"`
	Fraction float64  `yaml:"fraction" json:"fraction"`
	Window   Duration `yaml:"window" json:"window"`
}

// Mock configures the provider mocks.
type Mock struct {
	Latency LatencySpec `yaml:"latency" json:"latency"`
	Rate500 float64     `yaml:"rate_500" json:"rate_500"`
	Rate503 float64     `yaml:"rate_503" json:"rate_503"`
}

// LatencySpec is the mocks' injected answer latency.
type LatencySpec struct {
	Dist string   `yaml:"dist" json:"dist"` // none, fixed, uniform, exponential
	Min  Duration `yaml:"min" json:"min"`   // fixed: the value; uniform: lower bound
	Max  Duration `yaml:"max" json:"max"`   // uniform: upper bound; exponential: cap
	Mean Duration `yaml:"mean" json:"mean"` // exponential
}

// Load reads and validates a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse decodes (unknown fields are errors), applies defaults and validates.
func Parse(b []byte) (*Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	s.defaults()
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Scenario) defaults() {
	if s.AccountsPerDevice == 0 {
		s.AccountsPerDevice = 1
	}
	if s.XMPP.Servers == 0 {
		s.XMPP.Servers = 1
	}
	if s.XMPP.ComponentJID == "" {
		s.XMPP.ComponentJID = "push%d.loadtest.example"
	}
	if s.XMPP.Domain == "" {
		s.XMPP.Domain = "xmpp%d.loadtest.example"
	}
	if s.Slack == 0 {
		s.Slack = Duration(5 * time.Second)
	}
	if s.MinAccepted == 0 {
		s.MinAccepted = 0.99
	}
	if s.MaxInFlight == 0 {
		s.MaxInFlight = 2000
	}
	for i := range s.Apps {
		if s.Apps[i].Share == 0 {
			s.Apps[i].Share = 1
		}
		if s.Apps[i].MinInterval == 0 {
			s.Apps[i].MinInterval = Duration(10 * time.Second)
		}
	}
	if s.Drain == 0 {
		s.Drain = Duration(s.MaxMinInterval() + 5*time.Second)
	}
	if r := s.Ramp; r != nil {
		if r.MaxAckP99 == 0 {
			r.MaxAckP99 = Duration(time.Second)
		}
		if r.MinAccepted == 0 {
			r.MinAccepted = 0.999
		}
		if r.MaxLag == 0 {
			r.MaxLag = Duration(time.Second)
		}
		if r.Step > 0 && r.Every > 0 && r.Max >= s.Rate && s.Rate > 0 {
			full := time.Duration(r.Steps(s.Rate)) * r.Every.D()
			if s.Duration == 0 || s.Duration.D() > full {
				s.Duration = Duration(full)
			}
		}
	}
	if s.Shape.Steady == 0 && s.Shape.GroupBurst.Weight == 0 && s.Shape.RetryStorm.Weight == 0 {
		s.Shape.Steady = 1
	}
	if s.Shape.GroupBurst.Weight > 0 && s.Shape.GroupBurst.Size == 0 {
		s.Shape.GroupBurst.Size = 10
	}
	if s.Shape.RetryStorm.Weight > 0 {
		if s.Shape.RetryStorm.Repeats == 0 {
			s.Shape.RetryStorm.Repeats = 3
		}
		if s.Shape.RetryStorm.Interval == 0 {
			s.Shape.RetryStorm.Interval = Duration(200 * time.Millisecond)
		}
	}
	if s.Shape.MassReconnect.Fraction > 0 && s.Shape.MassReconnect.Window == 0 {
		s.Shape.MassReconnect.Window = Duration(time.Second)
	}
	if s.Mock.Latency.Dist == "" {
		s.Mock.Latency.Dist = "none"
	}
	s.faultDefaults()
	s.warmupDefaults()
}

// MaxMinInterval is the longest min_interval of the scenario's apps.
func (s *Scenario) MaxMinInterval() time.Duration {
	var m time.Duration
	for _, a := range s.Apps {
		m = max(m, a.MinInterval.D())
	}
	return m
}

// Validate reports every problem at once.
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Name == "" {
		bad("name: required")
	}
	if s.Duration <= 0 {
		bad("duration: must be > 0, e.g. 60s")
	}
	if s.Drain < 0 {
		bad("drain: must be ≥ 0")
	}
	if !(s.Rate > 0) || math.IsInf(s.Rate, 0) {
		bad("rate: must be > 0 publishes/s, got %v", s.Rate)
	}
	if s.Devices < 1 {
		bad("devices: must be ≥ 1, got %d", s.Devices)
	}
	if s.AccountsPerDevice < 1 || s.AccountsPerDevice > 16 {
		bad("accounts_per_device: must be 1…16, got %d", s.AccountsPerDevice)
	}
	if len(s.Apps) == 0 {
		bad("apps: at least one app is required")
	}
	seen := map[string]bool{}
	for i, a := range s.Apps {
		if a.ID == "" || strings.ContainsAny(a.ID, " /") {
			bad("apps[%d].id: want an app id such as im.example.chat, got %q", i, a.ID)
		}
		if seen[a.ID] {
			bad("apps[%d].id: %q appears twice", i, a.ID)
		}
		seen[a.ID] = true
		if a.Platform != "apns" && a.Platform != "fcm" {
			bad("apps[%d].platform: want apns or fcm, got %q", i, a.Platform)
		}
		if a.Share < 0 {
			bad("apps[%d].share: must be ≥ 0", i)
		}
		if a.MinInterval < Duration(100*time.Millisecond) {
			bad("apps[%d].min_interval: must be ≥ 100ms, got %s", i, a.MinInterval.D())
		}
	}
	if s.XMPP.Servers < 1 || s.XMPP.Servers > 64 {
		bad("xmpp.servers: must be 1…64, got %d", s.XMPP.Servers)
	}
	if strings.Count(s.XMPP.ComponentJID, "%d") != 1 && s.XMPP.Servers > 1 {
		bad("xmpp.component_jid: must contain %%d once when there are several servers, got %q", s.XMPP.ComponentJID)
	}
	if strings.Count(s.XMPP.Domain, "%d") != 1 && s.XMPP.Servers > 1 {
		bad("xmpp.domain: must contain %%d once when there are several servers, got %q", s.XMPP.Domain)
	}
	share := func(name string, v float64) {
		if v < 0 || v > 1 || math.IsNaN(v) {
			bad("%s: must be in [0,1], got %v", name, v)
		}
	}
	share("urgent_share", s.UrgentShare)
	share("http_share", s.HTTPShare)
	share("min_accepted", s.MinAccepted)
	share("mock.rate_500", s.Mock.Rate500)
	share("mock.rate_503", s.Mock.Rate503)
	share("shape.mass_reconnect.fraction", s.Shape.MassReconnect.Fraction)
	if s.Mock.Rate500+s.Mock.Rate503 > 0.5 {
		bad("mock: rate_500 + rate_503 must be ≤ 0.5 (the sender's retries must be able to win)")
	}
	sh := s.Shape
	if sh.Steady < 0 || sh.GroupBurst.Weight < 0 || sh.RetryStorm.Weight < 0 {
		bad("shape: weights must be ≥ 0")
	}
	if sh.GroupBurst.Weight > 0 && (sh.GroupBurst.Size < 2 || sh.GroupBurst.Size > s.Devices) {
		bad("shape.group_burst.size: must be 2…devices (%d), got %d", s.Devices, sh.GroupBurst.Size)
	}
	if sh.GroupBurst.Spread < 0 {
		bad("shape.group_burst.spread: must be ≥ 0")
	}
	if sh.RetryStorm.Weight > 0 && (sh.RetryStorm.Repeats < 2 || sh.RetryStorm.Repeats > 100) {
		bad("shape.retry_storm.repeats: must be 2…100, got %d", sh.RetryStorm.Repeats)
	}
	if sh.MassReconnect.Fraction > 0 && (sh.MassReconnect.At < 0 || sh.MassReconnect.At >= s.Duration) {
		bad("shape.mass_reconnect.at: must be within the duration (%s), got %s", s.Duration.D(), sh.MassReconnect.At.D())
	}
	switch l := s.Mock.Latency; l.Dist {
	case "none":
	case "fixed":
		if l.Min <= 0 {
			bad("mock.latency.min: fixed latency needs min > 0")
		}
	case "uniform":
		if l.Min < 0 || l.Max <= l.Min {
			bad("mock.latency: uniform needs 0 ≤ min < max")
		}
	case "exponential":
		if l.Mean <= 0 || l.Max < l.Mean {
			bad("mock.latency: exponential needs mean > 0 and max ≥ mean")
		}
	default:
		bad("mock.latency.dist: want none, fixed, uniform or exponential, got %q", l.Dist)
	}
	if s.MaxInFlight < 1 {
		bad("max_in_flight: must be ≥ 1")
	}
	if s.Slack < 0 {
		bad("slack: must be ≥ 0")
	}
	if r := s.Ramp; r != nil {
		if !(r.Step > 0) || math.IsInf(r.Step, 0) {
			bad("ramp.step: must be > 0 publishes/s, got %v", r.Step)
		}
		if r.Every < Duration(time.Second) {
			bad("ramp.every: must be ≥ 1s, got %s", r.Every.D())
		}
		if !(r.Max >= s.Rate) || math.IsInf(r.Max, 0) {
			bad("ramp.max: must be ≥ rate (%v), got %v", s.Rate, r.Max)
		}
		if r.MaxAckP99 < 0 || r.MaxLeadingP99 < 0 || r.MaxLag < 0 {
			bad("ramp: max_ack_p99, max_leading_p99 and max_lag must be ≥ 0")
		}
		share("ramp.min_accepted", r.MinAccepted)
		if s.Shape.MassReconnect.Fraction > 0 {
			bad("shape.mass_reconnect: not with ramp (a one-time spike would decide the search)")
		}
	}
	s.validateFaults(bad)
	s.validateWarmup(bad)
	return errors.Join(errs...)
}

// ComponentJID is the App Server JID of XMPP server i (0-based).
func (s *Scenario) ComponentJID(i int) string { return fill(s.XMPP.ComponentJID, i+1) }

// ServerDomain is the domain of XMPP server i (0-based).
func (s *Scenario) ServerDomain(i int) string { return fill(s.XMPP.Domain, i+1) }

func fill(pattern string, n int) string {
	if strings.Contains(pattern, "%d") {
		return fmt.Sprintf(pattern, n)
	}
	return pattern
}

// Device is one phone of the generated population.
type Device struct {
	Index int
	App   int // index into Scenario.Apps
	Token string
	// Servers[k] is the XMPP server of account k.
	Servers []int
}

// Kind is the pattern a publish belongs to.
type Kind uint8

const (
	Steady Kind = iota
	Burst
	Retry
	Reconnect
)

func (k Kind) String() string {
	return [...]string{"steady", "group_burst", "retry_storm", "mass_reconnect"}[k]
}

// Publish is one planned publish.
type Publish struct {
	At      time.Duration // intended send time from the start of the load phase
	Device  int32
	Account int8
	Kind    Kind
	Urgent  bool
	HTTP    bool
}

// Plan is the expanded scenario.
type Plan struct {
	Devices   []Device
	Publishes []Publish // sorted by At
	// Steps are the ramp's rate steps (one step spanning the load phase without a ramp).
	Steps []Step
}

// Step is a span of the load phase offered at one rate.
type Step struct {
	Rate     float64
	From, To time.Duration
}

// RateAt is the offered rate (publishes/s) at t into the load phase.
func (s *Scenario) RateAt(t time.Duration) float64 {
	r := s.Ramp
	if r == nil {
		return s.Rate
	}
	return min(s.Rate+r.Step*math.Floor(float64(t)/float64(r.Every.D())), r.Max)
}

func (s *Scenario) steps() []Step {
	dur := s.Duration.D()
	if s.Ramp == nil {
		return []Step{{Rate: s.Rate, From: 0, To: dur}}
	}
	var out []Step
	for from := time.Duration(0); from < dur; from += s.Ramp.Every.D() {
		out = append(out, Step{Rate: s.RateAt(from), From: from, To: min(from+s.Ramp.Every.D(), dur)})
	}
	return out
}

// distinct picks k different numbers from [0, n) (k ≤ n). A small k by rejection: a full
// permutation per group burst would cost O(devices) each.
func distinct(rng *rand.Rand, n, k int) []int {
	if 4*k > n {
		return rng.Perm(n)[:k]
	}
	out := make([]int, 0, k)
	for len(out) < k {
		d := rng.IntN(n)
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// Expand generates the device population and the publish schedule. The same scenario (and
// seed) always gives the same plan.
func (s *Scenario) Expand() *Plan {
	rng := rand.New(rand.NewPCG(s.Seed, 0x10ad7e57))
	p := &Plan{Devices: make([]Device, s.Devices), Steps: s.steps()}
	for i := range p.Devices {
		p.Devices[i] = s.device(rng, i, uint64(i), fmt.Sprint(i))
	}

	sh := s.Shape
	// Units (a steady publish, a burst, a storm) arrive as a Poisson process; their mean size
	// turns the publish rate into a unit rate.
	wS, wB, wR := sh.Steady, sh.GroupBurst.Weight, sh.RetryStorm.Weight
	wsum := wS + wB + wR
	// Shares are of publishes: unit probabilities are weight/size.
	uS, uB, uR := wS, 0.0, 0.0
	if wB > 0 {
		uB = wB / float64(sh.GroupBurst.Size)
	}
	if wR > 0 {
		uR = wR / float64(sh.RetryStorm.Repeats)
	}
	usum := uS + uB + uR
	meanSize := wsum / usum
	dur := s.Duration.D()
	add := func(pub Publish) {
		if pub.At < dur {
			p.Publishes = append(p.Publishes, pub)
		}
	}
	pick := func(kind Kind, at time.Duration) Publish {
		d := rng.IntN(s.Devices)
		return Publish{At: at, Device: int32(d), Account: int8(rng.IntN(s.AccountsPerDevice)), Kind: kind,
			Urgent: rng.Float64() < s.UrgentShare, HTTP: rng.Float64() < s.HTTPShare}
	}
	t := 0.0
	for {
		// A ramp's rate is piecewise constant: the next arrival is drawn at the current step's
		// rate (the step boundary's error is one inter-arrival time).
		t += rng.ExpFloat64() / (s.RateAt(time.Duration(t*float64(time.Second))) / meanSize)
		at := time.Duration(t * float64(time.Second))
		if at >= dur {
			break
		}
		x := rng.Float64() * usum
		switch {
		case x < uS:
			add(pick(Steady, at))
		case x < uS+uB:
			for _, d := range distinct(rng, s.Devices, sh.GroupBurst.Size) {
				off := time.Duration(0)
				if sh.GroupBurst.Spread > 0 {
					off = time.Duration(rng.Int64N(int64(sh.GroupBurst.Spread)))
				}
				pub := pick(Burst, at+off)
				pub.Device = int32(d)
				pub.Urgent = false // group messages are never calls
				add(pub)
			}
		default:
			pub := pick(Retry, at)
			for k := range sh.RetryStorm.Repeats {
				pub.At = at + time.Duration(k)*sh.RetryStorm.Interval.D()
				add(pub)
			}
		}
	}
	if mr := sh.MassReconnect; mr.Fraction > 0 {
		for d := range s.Devices {
			for a := range s.AccountsPerDevice {
				if rng.Float64() >= mr.Fraction {
					continue
				}
				pub := pick(Reconnect, mr.At.D()+time.Duration(rng.Int64N(int64(mr.Window.D())+1)))
				pub.Device, pub.Account = int32(d), int8(a)
				add(pub)
			}
		}
	}
	slices.SortStableFunc(p.Publishes, func(a, b Publish) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return p
}

// device draws device i: its app by the apps' shares, a token of the app's platform made of the
// seed, tokenIndex / fcmTag (unique per device population) and random bits, and the XMPP
// server of each of its accounts.
func (s *Scenario) device(rng *rand.Rand, i int, tokenIndex uint64, fcmTag string) Device {
	var total float64
	for _, a := range s.Apps {
		total += a.Share
	}
	d := Device{Index: i, Servers: make([]int, s.AccountsPerDevice)}
	x := rng.Float64() * total
	for j, a := range s.Apps {
		if x < a.Share || j == len(s.Apps)-1 {
			d.App = j
			break
		}
		x -= a.Share
	}
	if s.Apps[d.App].Platform == "apns" {
		d.Token = fmt.Sprintf("%016x%016x%016x%016x", s.Seed, tokenIndex, rng.Uint64(), rng.Uint64())
	} else {
		d.Token = fmt.Sprintf("lt%x_%s:APA91b%016x%016x", s.Seed, fcmTag, rng.Uint64(), rng.Uint64())
	}
	for k := range d.Servers {
		d.Servers[k] = rng.IntN(s.XMPP.Servers)
	}
	return d
}
