package runner

import (
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/scenario"
)

// TestChaosShortScenario runs loadtest/scenarios/chaos-short.yaml: the real pipeline with two
// coalescers and two senders, under steady load, while the runner kills a coalescer and a
// sender, freezes the broker, stops ClickHouse and makes the APNs mock answer 503. It fails on
// any loss, duplicate burst, extra wake beyond one per touched device, dead letter, Kafka /
// ClickHouse count difference or fault that did not recover within its (generous) bound.
// No wall-clock speed is asserted. It starts its own broker (a child process, so it can be
// frozen) and ClickHouse (so it can be stopped).
func TestChaosShortScenario(t *testing.T) {
	sc, err := scenario.Load("../scenarios/chaos-short.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := runScenario(t, "chaos-short.yaml", Options{})
	t.Logf("chaos-short: sent %d accepted %d, wakes %d oracle %d, uncovered %d, duplicates %d",
		sum.Sent, sum.Accepted, sum.Wakes, sum.OracleWakes, sum.Uncovered, sum.DuplicatePush)
	if sum.Chaos == nil || len(sum.Chaos.Faults) != len(sc.Faults) || sum.Kafka == nil {
		t.Fatalf("no fault results: chaos %+v kafka %+v", sum.Chaos, sum.Kafka)
	}
	d := func(x time.Duration) string {
		if x < 0 {
			return "–"
		}
		return x.Round(100 * time.Millisecond).String()
	}
	for _, f := range sum.Chaos.Faults {
		t.Logf("fault %-16s at %5s for %4s: back after %5s, recovery %5s (recovered %v), catch-up %5s, touched %d devices / %d events, refused %d, extra wakes %d (max %d), lost %d",
			f.Name, d(f.Start), d(f.Duration), d(f.Ready), d(f.Recovery), f.Recovered, d(f.CatchUp), f.TouchedDevices, f.TouchedEvents,
			f.Refused, f.ExtraWakes, f.MaxExtra, f.Uncovered)
		if f.TouchedEvents == 0 {
			t.Errorf("fault %s touched no events: the load did not run through it", f.Name)
		}
	}
	if !sum.Kafka.CountsAgree || sum.Kafka.DeadLetters != 0 || sum.Kafka.Bursts != 0 {
		t.Errorf("Kafka check: %+v", sum.Kafka)
	}
	if sum.Accepted == 0 || sum.Wakes == 0 {
		t.Errorf("implausible run: %+v", sum)
	}
}
