package senderbench

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2, 2, 9}, 2},
	} {
		in := append([]float64(nil), tc.in...)
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("Median reordered its input: %v", tc.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median of nothing is not NaN")
	}
}

func meas(run int, target string, pushes int, wall time.Duration, tgt, broker, mock, harness time.Duration) Measurement {
	return Measurement{Run: run, Target: target, Pushes: pushes, Wall: wall,
		CPU: map[string]time.Duration{ProcTarget: tgt, ProcBroker: broker, ProcMock: mock, ProcHarness: harness}}
}

func TestRowOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Measurement
		want Row
	}{
		{"100k pushes in 5 s", meas(2, TargetSender, 100_000, 5*time.Second, 12*time.Second, 3*time.Second, 6*time.Second, time.Second),
			Row{Run: 2, Target: TargetSender, Pushes: 100_000, WallS: 5, PushesPerS: 20_000, TargetUS: 120, BrokerUS: 30, MockUS: 60, HarnessUS: 10}},
		{"self-reported CPU", Measurement{Run: 1, Target: TargetBare, Pushes: 1000, Wall: 500 * time.Millisecond,
			CPU: map[string]time.Duration{ProcTarget: 60 * time.Millisecond}, SelfCPU: 58 * time.Millisecond},
			Row{Run: 1, Target: TargetBare, Pushes: 1000, WallS: 0.5, PushesPerS: 2000, TargetUS: 60, SelfUS: 58}},
		{"nothing delivered: no division by zero", meas(1, TargetSender, 0, time.Second, time.Second, 0, 0, 0),
			Row{Run: 1, Target: TargetSender, WallS: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RowOf(tc.m)
			if !rowsClose(got, tc.want) {
				t.Errorf("RowOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func rowsClose(a, b Row) bool {
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(y)) }
	return a.Run == b.Run && a.Target == b.Target && a.Pushes == b.Pushes && near(a.WallS, b.WallS) && near(a.PushesPerS, b.PushesPerS) &&
		near(a.TargetUS, b.TargetUS) && near(a.BrokerUS, b.BrokerUS) && near(a.MockUS, b.MockUS) && near(a.HarnessUS, b.HarnessUS) && near(a.SelfUS, b.SelfUS)
}

func TestMedianRowAndRatios(t *testing.T) {
	s, ms := TargetSender, time.Millisecond
	const n = 1000
	rows := func(ms ...Measurement) []Row {
		var out []Row
		for _, m := range ms {
			out = append(out, RowOf(m))
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		rows        []Row
		runs        int
		wantSender  Row // TargetUS, BrokerUS and Pushes compared
		wantPerRun  []float64
		wantMedian  float64
		wantOfMeds  float64
		wantBroker  float64
		wantMissing bool // no bare rows: ratios NaN
	}{
		{"three paired runs", rows(
			meas(1, s, n, time.Second, 150*ms, 30*ms, 80*ms, 10*ms), meas(1, TargetBare, n, time.Second, 50*ms, 0, 70*ms, 0),
			meas(2, TargetBare, n, time.Second, 60*ms, 0, 70*ms, 0), meas(2, s, n, time.Second, 240*ms, 40*ms, 80*ms, 10*ms),
			meas(3, s, n, time.Second, 120*ms, 20*ms, 80*ms, 10*ms), meas(3, TargetBare, n, time.Second, 40*ms, 0, 70*ms, 0),
		), 3, Row{Pushes: n, TargetUS: 150, BrokerUS: 30}, []float64{3, 4, 3}, 3, 3, 3.6, false},
		{"even count: mean of the middle two", rows(
			meas(1, s, n, time.Second, 100*ms, 10*ms, 0, 0), meas(1, TargetBare, n, time.Second, 50*ms, 0, 0, 0),
			meas(2, s, n, time.Second, 300*ms, 30*ms, 0, 0), meas(2, TargetBare, n, time.Second, 100*ms, 0, 0, 0),
		), 2, Row{Pushes: n, TargetUS: 200, BrokerUS: 20}, []float64{2, 3}, 2.5, 200.0 / 75, 220.0 / 75, false},
		{"a run without its bare row is left out of the median", rows(
			meas(1, s, n, time.Second, 100*ms, 0, 0, 0), meas(1, TargetBare, n, time.Second, 50*ms, 0, 0, 0),
			meas(2, s, n, time.Second, 300*ms, 0, 0, 0),
		), 2, Row{Pushes: n, TargetUS: 200}, []float64{2, math.NaN()}, 2, 4, 4, false},
		{"sender only", rows(meas(1, s, n, time.Second, 100*ms, 0, 0, 0)), 1, Row{Pushes: n, TargetUS: 100},
			[]float64{math.NaN()}, math.NaN(), math.NaN(), math.NaN(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := MedianRow(TargetSender, tc.rows)
			if m.Run != 0 || m.Target != TargetSender || m.Pushes != tc.wantSender.Pushes ||
				math.Abs(m.TargetUS-tc.wantSender.TargetUS) > 1e-9 || math.Abs(m.BrokerUS-tc.wantSender.BrokerUS) > 1e-9 {
				t.Errorf("sender median %+v, want %+v", m, tc.wantSender)
			}
			r := ComputeRatios(tc.rows, tc.runs)
			same := func(a, b float64) bool {
				return (math.IsNaN(a) && math.IsNaN(b)) || math.Abs(a-b) <= 1e-9
			}
			if len(r.PerRun) != len(tc.wantPerRun) {
				t.Fatalf("per run %v, want %v", r.PerRun, tc.wantPerRun)
			}
			for i := range r.PerRun {
				if !same(float64(r.PerRun[i]), tc.wantPerRun[i]) {
					t.Errorf("per run %v, want %v", r.PerRun, tc.wantPerRun)
				}
			}
			if !same(float64(r.Median), tc.wantMedian) || !same(float64(r.OfMedians), tc.wantOfMeds) || !same(float64(r.WithBroker), tc.wantBroker) {
				t.Errorf("median %v, of medians %v, with broker %v; want %v, %v, %v", r.Median, r.OfMedians, r.WithBroker,
					tc.wantMedian, tc.wantOfMeds, tc.wantBroker)
			}
		})
	}
}

// TestReportOutputs: Finish derives rows, medians and ratios; the markdown has a row per run
// and target, the medians and the headline ratio; the JSON is valid (NaN ratios as null).
func TestReportOutputs(t *testing.T) {
	ms := time.Millisecond
	rep := &Report{
		Config: Config{Devices: 1000, Runs: 2, Concurrency: 64, Conns: 1, Partitions: 4, Targets: []string{TargetSender, TargetBare}},
		Measurements: []Measurement{
			meas(1, TargetSender, 1000, 2*time.Second, 150*ms, 30*ms, 80*ms, 10*ms),
			meas(1, TargetBare, 1000, time.Second, 50*ms, 0, 70*ms, 0),
			meas(2, TargetBare, 1000, time.Second, 60*ms, 0, 70*ms, 0),
		},
		Failures: []string{"run 2, sender: no progress"},
	}
	rep.Finish()
	if len(rep.Rows) != 3 || len(rep.Medians) != 2 || rep.Ratios == nil || float64(rep.Ratios.Median) != 3 {
		t.Fatalf("rows %d, medians %d, ratios %+v", len(rep.Rows), len(rep.Medians), rep.Ratios)
	}
	var md strings.Builder
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| 1 | sender | 1000 | 2.00 | 500 | 150.0 | 30.0 | 80.0 | 10.0 |",
		"| 2 | bare-apns2 | 1000 | 1.00 | 1000 | 60.0 | 0.0 | 70.0 | 0.0 |",
		"| **median** | bare-apns2 | 1000 | 1.00 | 1000 | 55.0 |",
		"**sender / bare-apns2 CPU per push: 3.00×** (median of the per-run ratios 3.00, NaN;",
		"- run 2, sender: no progress",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Ratios struct {
			PerRun []*float64 `json:"per_run"`
			Median float64    `json:"median"`
		} `json:"ratios"`
		Rows []Row `json:"rows"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Ratios.PerRun) != 2 || back.Ratios.PerRun[0] == nil || *back.Ratios.PerRun[0] != 3 || back.Ratios.PerRun[1] != nil ||
		back.Ratios.Median != 3 || len(back.Rows) != 3 {
		t.Errorf("JSON read back: %s", b)
	}
}

func TestParseAnswers(t *testing.T) {
	text := `# HELP apnsmock_requests_total APNs requests answered
# TYPE apnsmock_requests_total counter
apnsmock_requests_total{reason="",status="200"} 2999
apnsmock_requests_total{reason="BadDeviceToken",status="400"} 0
apnsmock_requests_total{reason="ServiceUnavailable",status="503"} 1
apnsmock_connections_total 1
`
	got, err := parseAnswers(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["200 "] != 2999 || got["503 ServiceUnavailable"] != 1 {
		t.Fatalf("answers %v", got)
	}
	if _, err := parseAnswers(`apnsmock_requests_total{reason="",status="200"} x` + "\n"); err == nil {
		t.Fatal("no error for a value that is not a number")
	}
}
