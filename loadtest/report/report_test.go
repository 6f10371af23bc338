package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/loadtest/analysis"
)

func TestWriteAndPlots(t *testing.T) {
	dir := t.TempDir()
	series := []analysis.Bucket{{Second: 0, Sent: 10, Accepted: 9, Errors: 1, E2EP50: time.Millisecond, E2EP99: 5 * time.Millisecond},
		{Second: 1, Sent: 12, Accepted: 12, E2EP50: 2 * time.Millisecond, E2EP99: 7 * time.Millisecond}}
	lat := []time.Duration{time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond}
	names, err := Plots(dir, series, lat, lat)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 3 {
		t.Fatalf("plots %v", names)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Fatalf("%s: not a PNG (%v)", n, err)
		}
	}
	s := &Summary{Scenario: "x", Sent: 22, Accepted: 21, Uncovered: 2, Failures: []string{"2 uncovered events (loss)"}, Plots: names, Series: series}
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(md), "FAIL") || !strings.Contains(string(md), "latency-cdf.png") || !strings.Contains(string(md), "uncovered events (loss) | 2") {
		t.Errorf("report.md:\n%s", md)
	}
	var back Summary
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &back); err != nil || back.Uncovered != 2 || len(back.Series) != 2 {
		t.Fatalf("summary.json: %v %+v", err, back)
	}
}

func TestMarkdownSteps(t *testing.T) {
	steps := []Step{
		{Rate: 1000, Sent: 1000, Accepted: 1000, Throughput: 1000, Complete: true, Sustained: true, CPU: map[string]float64{"ingest": 0.25, "loadtest": 0.5, "kafka": 0.125}, MachineCores: 1.5},
		{Rate: 2000, Sent: 1500, Accepted: 1400, Throughput: 1400, Missed: []string{"not sent to the end", "1400 of 1500 accepted"}, CPU: map[string]float64{"ingest": 0.75, "loadtest": 1, "kafka": 0.25}},
	}
	md := Markdown(&Summary{Scenario: "m", Steps: steps, Ramp: &Ramp{MaxAckP99: time.Second, MinAccepted: 0.999, MaxSustained: 1000, Stopped: "at 2000/s offered ingest refused 100 of 1500 publishes"}})
	for _, want := range []string{"Highest sustained offered rate: 1000 publishes/s", "The ramp stopped raising the rate: at 2000/s",
		"| ingest | **pipeline** | kafka | loadtest | **harness** | machine | others |", "| 1000 | 1000 | 1000 | 100.00 |",
		"| 0.75 | **0.75** | 0.25 | 1.00 | **1.25** | ? | ? | missed: not sent to the end; 1400 of 1500 accepted"} {
		if !strings.Contains(md, want) {
			t.Errorf("report misses %q:\n%s", want, md)
		}
	}
	md = Markdown(&Summary{Scenario: "fixed", Steps: steps[:1]})
	if !strings.Contains(md, "## CPU") || !strings.Contains(md, "| 0.25 | **0.25** | 0.12 | 0.50 | **0.62** | 1.50 | 0.62 |") || strings.Contains(md, "Find max rate") {
		t.Errorf("fixed-rate report:\n%s", md)
	}
}
