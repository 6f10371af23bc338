package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wakepush/wakepush/deploy/local/stacktest"
	"github.com/wakepush/wakepush/loadtest/report"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// runScenario runs the shipped scenario file (loadtest/scenarios/<file>) against the real
// pipeline, with the service binaries built like the test (-race) and the report in a temporary
// directory; opts may set more Options. It skips in -short mode, logs every failure the report
// lists as a test error, and logs report.md when the test has failed.
func runScenario(t *testing.T, file string, opts Options) (*report.Summary, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario test")
	}
	sc, err := scenario.Load(filepath.Join("..", "scenarios", file))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
			t.Logf("report:\n%s", md)
		}
	})
	opts.Scenario, opts.ReportDir, opts.Race, opts.Logf = sc, dir, true, t.Logf
	opts.Build = func(pkg string) (string, error) { return stacktest.Build(t, pkg), nil }
	began := time.Now()
	sum, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s took %s", file, time.Since(began).Round(time.Second))
	for _, f := range sum.Failures {
		t.Errorf("failure: %s", f)
	}
	return sum, dir
}

// TestSmokeScenario runs loadtest/scenarios/smoke.yaml against the real pipeline (the four
// service binaries built like the test, kfake, ClickHouse, the mocks) and fails on any loss,
// any ClickHouse disagreement or any other failure the report lists.
func TestSmokeScenario(t *testing.T) {
	ch := stacktest.ClickHouse(t)
	sum, dir := runScenario(t, "smoke.yaml", Options{ClickHouseTCP: ch.TCPAddr})
	t.Logf("smoke: sent %d accepted %d, ack p99 %s, e2e leading p99 %s, wakes %d oracle %d, uncovered %d (ClickHouse %d)",
		sum.Sent, sum.Accepted, sum.Ack.P99, sum.E2ELeading.P99, sum.Wakes, sum.OracleWakes,
		sum.Uncovered, sum.ClickHouse.Uncovered)
	for _, w := range sum.Warnings {
		t.Logf("warning: %s", w)
	}
	if sum.Sent != sum.Planned || sum.Accepted == 0 || sum.Wakes == 0 || sum.OracleWakes == 0 || sum.E2ELeading.N == 0 {
		t.Errorf("implausible run: %+v", sum)
	}
	if sum.ClickHouse.Events < sum.Accepted || !sum.ClickHouse.Agree {
		t.Errorf("ClickHouse view: %+v", sum.ClickHouse)
	}
	if sum.SentHTTP == 0 || sum.Ack.N == 0 || sum.AckHTTP.N == 0 {
		t.Errorf("both paths must carry load: http %d, component acks %d, http acks %d", sum.SentHTTP, sum.Ack.N, sum.AckHTTP.N)
	}
	// Coalescing must save pushes: far fewer wakes than events, and not far from the oracle.
	if sum.Wakes >= sum.Accepted || float64(sum.Wakes) > 1.5*float64(sum.OracleWakes) {
		t.Errorf("wakes %d for %d events, oracle %d", sum.Wakes, sum.Accepted, sum.OracleWakes)
	}
	for _, f := range []string{"report.md", "summary.json", "latency.png", "throughput.png", "latency-cdf.png", "ingest-1.log", "sender.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil && !(strings.HasPrefix(f, "ingest") && sum.Components == "list") {
			t.Errorf("report file: %v", err)
		}
	}
}
