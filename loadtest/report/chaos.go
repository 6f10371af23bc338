package report

import (
	"fmt"
	"strings"
	"time"
)

// Chaos is the outcome of a scenario's faults.
type Chaos struct {
	// Threshold and Window define recovery: the leading-edge lag stayed ≤ Threshold for Window.
	Threshold time.Duration `json:"recovery_threshold_ns"`
	Window    time.Duration `json:"recovery_window_ns"`
	Faults    []FaultResult `json:"faults"`
	// Devices that no fault touched but that received more wakes than the oracle's minimum.
	UntouchedWithExtra int  `json:"untouched_devices_with_extra_wakes"`
	MaxExtraUntouched  int  `json:"untouched_max_extra_wakes"`
	Pass               bool `json:"pass"`
}

// FaultResult is one injected fault and what it did to the pipeline.
type FaultResult struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"`
	// Start is when it was injected, from the load phase's start; Duration how long it lasted.
	Start    time.Duration `json:"start_ns"`
	Duration time.Duration `json:"duration_ns"`
	// Ready is how long after the fault's end what it restarted answered again (-1: nothing
	// restarted, or never).
	Ready time.Duration `json:"ready_after_end_ns"`
	// Recovery is from the fault's end until the leading-edge lag stayed under the threshold
	// for the window (Recovered false: not before the run ended); MaxRecovery its bound.
	Recovery    time.Duration `json:"recovery_ns"`
	Recovered   bool          `json:"recovered"`
	MaxRecovery time.Duration `json:"max_recovery_ns"`
	// CatchUp is how long after the fault's end the recorder had written every event Kafka
	// held when ClickHouse (or the recorder) was back (-1: not measured).
	CatchUp time.Duration `json:"recorder_catch_up_ns"`
	// TouchedDevices had a publish sent from one interval before the fault until its recovery;
	// TouchedEvents are their accepted events in that span; Refused the publishes sent in it
	// that ingest refused or never answered.
	TouchedDevices int `json:"touched_devices"`
	TouchedEvents  int `json:"touched_events"`
	Refused        int `json:"refused"`
	// ExtraWakes is the sum over touched devices of the wakes received beyond the oracle's
	// minimum; DevicesWithExtra how many had any, MaxExtra the most one had (≤ 1 passes).
	ExtraWakes       int `json:"extra_wakes"`
	DevicesWithExtra int `json:"devices_with_extra_wakes"`
	MaxExtra         int `json:"max_extra_wakes"`
	// Uncovered are the touched events that got no wake by their deadline (loss).
	Uncovered int      `json:"uncovered"`
	Problems  []string `json:"problems,omitempty"`
	Pass      bool     `json:"pass"`
}

// KafkaCheck compares what Kafka holds with what the recorder wrote to ClickHouse and checks
// the dead-letter topics and the wakes' spacing.
type KafkaCheck struct {
	Topics []TopicCount `json:"topics"`
	// CountsAgree: every table holds as many distinct records as its topics.
	CountsAgree bool   `json:"counts_agree"`
	CountsAfter string `json:"counts_agree_after,omitempty"`
	// DeadLetters are the records of push.wakes.dlq and push.events.dlq (a sample of reasons).
	DeadLetters       int      `json:"dead_letters"`
	DeadLetterReasons []string `json:"dead_letter_sample,omitempty"`
	// Bursts are pairs of distinct non-urgent wakes of one device closer than its interval.
	Bursts      int      `json:"duplicate_bursts"`
	BurstSample []string `json:"duplicate_burst_sample,omitempty"`
}

// TopicCount is one topic's records in Kafka and its table's rows in ClickHouse.
type TopicCount struct {
	Topic    string `json:"topic"`
	Table    string `json:"table"`
	Records  int    `json:"kafka_records"`   // end − start offsets
	Distinct int    `json:"kafka_distinct"`  // distinct record ids (a producer retry can write one twice)
	Rows     int    `json:"clickhouse_rows"` // count() FINAL: one row per record id
}

func dur(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return d.Round(100 * time.Millisecond).String()
}

// writeChaos renders the faults table and the Kafka/ClickHouse/DLQ/burst checks.
func writeChaos(b *strings.Builder, s *Summary) {
	if c := s.Chaos; c != nil {
		verdict := "PASS"
		if !c.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(b, "## Faults: %s\n\n", verdict)
		fmt.Fprintf(b, "Recovery = from the fault's end until the leading-edge lag (the oldest leading-edge or urgent event still waiting for its wake, "+
			"from its intended send time) stayed ≤ %s for %s. Touched devices had a publish sent from one interval before the fault until its recovery; "+
			"extra wakes are the wakes they received beyond the oracle's minimum (≤ 1 per device passes).\n\n", dur(c.Threshold), dur(c.Window))
		b.WriteString("| fault | start | duration | back after | recovery (bound) | recorder catch-up | touched devices / events | refused | extra wakes (devices, max) | loss | verdict |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range c.Faults {
			rec := dur(f.Recovery)
			if !f.Recovered {
				rec = "not recovered"
			}
			v := "pass"
			if !f.Pass {
				v = "**FAIL**: " + strings.Join(f.Problems, "; ")
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s (%s) | %s | %d / %d | %d | %d (%d, %d) | %d | %s |\n",
				f.Name, dur(f.Start), dur(f.Duration), dur(f.Ready), rec, dur(f.MaxRecovery), dur(f.CatchUp),
				f.TouchedDevices, f.TouchedEvents, f.Refused, f.ExtraWakes, f.DevicesWithExtra, f.MaxExtra, f.Uncovered, v)
		}
		fmt.Fprintf(b, "\nDevices no fault touched with wakes beyond the oracle's minimum: %d (most extra on one: %d).\n\n", c.UntouchedWithExtra, c.MaxExtraUntouched)
	}
	if k := s.Kafka; k != nil {
		b.WriteString("## Kafka vs ClickHouse, dead letters, bursts\n\n| topic | table | Kafka records | distinct ids | ClickHouse rows |\n|---|---|---|---|---|\n")
		for _, t := range k.Topics {
			fmt.Fprintf(b, "| %s | %s | %d | %d | %d |\n", t.Topic, t.Table, t.Records, t.Distinct, t.Rows)
		}
		fmt.Fprintf(b, "\nCounts agree: **%v**", k.CountsAgree)
		if k.CountsAfter != "" {
			fmt.Fprintf(b, " (after %s)", k.CountsAfter)
		}
		fmt.Fprintf(b, ". Dead letters: **%d**. Duplicate bursts (distinct non-urgent wakes of a device closer than its interval): **%d**.\n", k.DeadLetters, k.Bursts)
		for _, d := range k.DeadLetterReasons {
			fmt.Fprintf(b, "- dead letter: %s\n", d)
		}
		for _, d := range k.BurstSample {
			fmt.Fprintf(b, "- burst: %s\n", d)
		}
		b.WriteString("\n")
	}
}
