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
