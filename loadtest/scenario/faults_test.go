package scenario

import (
	"strings"
	"testing"
	"time"
)

const faultBase = `
name: chaos-test
duration: 120s
rate: 10
devices: 10
apps: [{id: a, platform: apns}]
`

func TestFaultsValidate(t *testing.T) {
	cases := []struct {
		name string
		yaml string   // appended to faultBase
		want []string // substrings of the error; none: valid
	}{
		{name: "every kind valid", yaml: `
instances: {coalescer: 2, sender: 2}
faults:
  - {at: 5s, kind: kill, target: coalescer-1, duration: 5s}
  - {at: 5s, kind: kill, target: sender-2, duration: 0s}
  - {at: 5s, kind: kill, target: ingest, duration: 2s}
  - {at: 8s, kind: kill, target: recorder, duration: 2s}
  - {at: 20s, kind: kafka-freeze, duration: 10s}
  - {at: 40s, kind: kafka-restart, duration: 3s, signal: term}
  - {at: 10s, kind: clickhouse-stop, duration: 90s}
  - {at: 50s, kind: apns-503, duration: 5s}
  - {at: 60s, kind: apns-429, duration: 5s, fraction: 0.5, retry_after: 2s}
`},
		{name: "single instance aliases", yaml: `
faults:
  - {at: 5s, kind: kill, target: coalescer, duration: 5s}
  - {at: 15s, kind: kill, target: coalescer-1, duration: 5s}
  - {at: 25s, kind: kill, target: sender, duration: 5s}
`},
		{name: "unknown kind", yaml: "faults: [{at: 1s, kind: explode, duration: 1s}]", want: []string{`faults[0].kind: want one of kill, kafka-freeze`}},
		{name: "unknown target", yaml: "faults: [{at: 1s, kind: kill, target: kafka, duration: 1s}]", want: []string{`target: want one of ingest, recorder, coalescer, coalescer-1, sender, sender-1, got "kafka"`}},
		{name: "instance beyond the count", yaml: "instances: {coalescer: 2}\nfaults: [{at: 1s, kind: kill, target: coalescer-3, duration: 1s}]", want: []string{`got "coalescer-3"`}},
		{name: "plain name with two instances", yaml: "instances: {sender: 2}\nfaults: [{at: 1s, kind: kill, target: sender, duration: 1s}]", want: []string{`got "sender"`}},
		{name: "kill without target", yaml: "faults: [{at: 1s, kind: kill, duration: 1s}]", want: []string{`target: want one of`}},
		{name: "target on a non-kill", yaml: "faults: [{at: 1s, kind: kafka-freeze, target: ingest, duration: 1s}]", want: []string{"only kill has a target"}},
		{name: "zero-length freeze", yaml: "faults: [{at: 1s, kind: kafka-freeze}]", want: []string{"duration: must be > 0"}},
		{name: "negative at", yaml: "faults: [{at: -1s, kind: apns-503, duration: 1s}]", want: []string{".at: must be ≥ 0"}},
		{name: "ends after the load phase", yaml: "faults: [{at: 100s, kind: clickhouse-stop, duration: 30s}]", want: []string{"not within the load phase"}},
		{name: "fraction out of range", yaml: "faults: [{at: 1s, kind: apns-503, duration: 1s, fraction: 1.5}]", want: []string{"fraction: must be in (0,1]"}},
		{name: "fraction on a kill", yaml: "faults: [{at: 1s, kind: kill, target: ingest, duration: 1s, fraction: 0.5}]", want: []string{"only apns-503 and apns-429 storms have a fraction"}},
		{name: "retry_after on a 503 storm", yaml: "faults: [{at: 1s, kind: apns-503, duration: 1s, retry_after: 1s}]", want: []string{"only an apns-429 storm sends Retry-After"}},
		{name: "retry_after not whole seconds", yaml: "faults: [{at: 1s, kind: apns-429, duration: 1s, retry_after: 1500ms}]", want: []string{"whole seconds"}},
		{name: "bad signal", yaml: "faults: [{at: 1s, kind: kafka-restart, duration: 1s, signal: hup}]", want: []string{"signal: want kill or term"}},
		{name: "signal on a freeze", yaml: "faults: [{at: 1s, kind: kafka-freeze, duration: 1s, signal: kill}]", want: []string{"only kafka-restart takes a signal"}},
		{name: "same process twice at once", yaml: `
instances: {coalescer: 2}
faults:
  - {at: 5s, kind: kill, target: coalescer-1, duration: 10s}
  - {at: 10s, kind: kill, target: coalescer-1, duration: 10s}
`, want: []string{"faults[0] and faults[1] overlap on process coalescer-1"}},
		{name: "alias and name are one process", yaml: `
faults:
  - {at: 5s, kind: kill, target: sender, duration: 10s}
  - {at: 10s, kind: kill, target: sender-1, duration: 10s}
`, want: []string{"overlap on process sender"}},
		{name: "two coalescers down at once is fine", yaml: `
instances: {coalescer: 2}
faults:
  - {at: 5s, kind: kill, target: coalescer-1, duration: 10s}
  - {at: 10s, kind: kill, target: coalescer-2, duration: 10s}
`},
		{name: "freeze during a broker restart", yaml: `
faults:
  - {at: 5s, kind: kafka-restart, duration: 10s}
  - {at: 10s, kind: kafka-freeze, duration: 10s}
`, want: []string{"overlap on the Kafka broker"}},
		{name: "two storms at once", yaml: `
faults:
  - {at: 5s, kind: apns-503, duration: 10s}
  - {at: 15s, kind: apns-429, duration: 10s}
`, want: []string{"overlap on the APNs mock"}},
		{name: "ClickHouse stopped twice", yaml: `
faults:
  - {at: 5s, kind: clickhouse-stop, duration: 10s}
  - {at: 14s, kind: clickhouse-stop, duration: 10s}
`, want: []string{"overlap on ClickHouse"}},
		{name: "a kill during a ClickHouse stop is fine", yaml: `
faults:
  - {at: 5s, kind: clickhouse-stop, duration: 60s}
  - {at: 10s, kind: kill, target: recorder, duration: 5s}
  - {at: 20s, kind: kafka-freeze, duration: 5s}
`},
		{name: "instances out of range", yaml: "instances: {coalescer: 5, sender: -1}", want: []string{"instances.coalescer: must be 1…4", "instances.sender: must be 1…4"}},
		{name: "with a ramp", yaml: "ramp: {step: 10, every: 10s, max: 100}\nfaults: [{at: 1s, kind: apns-503, duration: 1s}]", want: []string{"faults: not with ramp"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(faultBase + c.yaml))
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error with %q, got none", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error misses %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestFaultDefaults(t *testing.T) {
	s, err := Parse([]byte(faultBase + `
faults:
  - {at: 1s, kind: apns-503, duration: 5s}
  - {at: 10s, kind: kafka-restart, duration: 1s}
  - {at: 20s, kind: kill, target: coalescer, duration: 1s, max_recovery: 15s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Instances != (Instances{Coalescer: 1, Sender: 1}) {
		t.Errorf("instances = %+v, want 1 and 1", s.Instances)
	}
	if s.Recovery.Threshold.D() != 2*time.Second || s.Recovery.Window.D() != 10*time.Second {
		t.Errorf("recovery = %+v", s.Recovery)
	}
	f := s.Faults
	if f[0].Fraction != 1 || f[0].MaxRecovery.D() != DefaultMaxRecovery[FaultAPNs503] {
		t.Errorf("storm defaults: %+v", f[0])
	}
	if f[1].Signal != "kill" || f[1].MaxRecovery.D() != DefaultMaxRecovery[FaultKafkaRestart] {
		t.Errorf("restart defaults: %+v", f[1])
	}
	if f[2].MaxRecovery.D() != 15*time.Second {
		t.Errorf("explicit max_recovery overridden: %+v", f[2])
	}
	if got := f[0].Name(); got != "apns-503" {
		t.Errorf("name %q", got)
	}
	if got := (Fault{Kind: FaultAPNs429, Fraction: 0.25}).Name(); got != "apns-429 25%" {
		t.Errorf("name %q", got)
	}
	if !s.HasFault(FaultKafkaFreeze, FaultKafkaRestart) || s.HasFault(FaultClickHouseStop) {
		t.Error("HasFault")
	}
}

func TestKillProcess(t *testing.T) {
	s := &Scenario{Instances: Instances{Coalescer: 1, Sender: 2}}
	for target, want := range map[string]string{
		"coalescer-1": "coalescer", "coalescer": "coalescer", "sender-2": "sender-2", "ingest": "ingest", "recorder": "recorder",
	} {
		if got := s.KillProcess(target); got != want {
			t.Errorf("KillProcess(%q) = %q, want %q", target, got, want)
		}
	}
	if got := ServiceName("sender", 1, 2); got != "sender-2" {
		t.Errorf("ServiceName = %q", got)
	}
	if got := ServiceName("sender", 0, 1); got != "sender" {
		t.Errorf("ServiceName = %q", got)
	}
}
