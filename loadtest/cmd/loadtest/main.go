// Command loadtest runs a load-test scenario against the whole wakepush pipeline, which it
// starts itself (kfake, ClickHouse, APNs/FCM mocks, the four services built from the
// workspace, each a process of its own), warms it up, and writes a Markdown report, a JSON
// summary and PNG plots.
//
//	go run ./loadtest/cmd/loadtest -scenario loadtest/scenarios/standard.yaml
//
// Exit status: 0 pass, 1 the run found loss or another failure (see the report), 2 the run
// could not be carried out.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/loadtest/procs"
	"github.com/wakepush/wakepush/loadtest/runner"
	"github.com/wakepush/wakepush/loadtest/scenario"
)

func main() {
	os.Exit(run())
}

func run() int {
	scenarioPath := flag.String("scenario", "", "scenario file (YAML), e.g. loadtest/scenarios/standard.yaml")
	reportDir := flag.String("report-dir", "", "report directory (default loadtest/reports/<timestamp> in the repository)")
	chAddr := flag.String("clickhouse", "", "use this running ClickHouse (native host:port) instead of starting one")
	mode := flag.String("component-mode", "auto", "auto, list (one ingest, WAKEPUSH_COMPONENTS) or single (one ingest per XMPP server)")
	race := flag.Bool("race", false, "build the services with -race")
	quiet := flag.Bool("quiet", false, "no progress line")
	profile := flag.Duration("profile", 0, "fetch a CPU profile of this length (e.g. 30s) from every service and the provider mocks' process in the middle of the load phase; saved in the report dir, top functions in report.md")
	inBroker := flag.Bool("inprocess-broker", false, "run kfake inside the load test process instead of as a child process (its CPU then counts as the load test's)")
	serviceProcs := flag.Int("service-procs", 0, "GOMAXPROCS of every service process, e.g. 1 as the Helm chart's goMaxProcsFromRequests sets it for the default CPU requests (0: Go's default, the machine's cores)")
	partitions := flag.Int("kafka-partitions", runner.DefaultKafkaPartitions, "partitions of every topic (the services' WAKEPUSH_KAFKA_PARTITIONS); at a low rate fewer partitions mean fuller fetches and produce requests")
	inMocks := flag.Bool("inprocess-mocks", false, "run the provider mocks inside the load test process instead of as a child process (their CPU then counts as the load test's)")
	flag.Parse()
	if *serviceProcs < 0 {
		fmt.Fprintln(os.Stderr, "loadtest: -service-procs must be 0 (Go's default) or more, got", *serviceProcs)
		return 2
	}
	if *partitions < 1 {
		fmt.Fprintln(os.Stderr, "loadtest: -kafka-partitions must be 1 or more, got", *partitions)
		return 2
	}
	if *scenarioPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: loadtest -scenario FILE [flags]")
		flag.PrintDefaults()
		return 2
	}
	sc, err := scenario.Load(*scenarioPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}
	root, err := procs.RepoRoot(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}
	dir := *reportDir
	if dir == "" {
		dir = filepath.Join(root, "loadtest", "reports", time.Now().UTC().Format("20060102-150405")+"-"+sc.Name)
	}
	binDir, err := os.MkdirTemp("", "loadtest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}
	defer os.RemoveAll(binDir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := runner.Options{
		Scenario: sc, ReportDir: dir, Build: procs.GoBuild(root, binDir, *race), Race: *race,
		ClickHouseTCP: *chAddr, ComponentMode: *mode, ServiceProcs: *serviceProcs, KafkaPartitions: *partitions, Profile: *profile, InProcessBroker: *inBroker, InProcessMocks: *inMocks,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "loadtest: "+format+"\n", args...)
		},
	}
	if !*quiet {
		opts.Progress = os.Stderr
	}
	sum, err := runner.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		return 2
	}
	fmt.Printf("report: %s\n", filepath.Join(dir, "report.md"))
	fmt.Printf("throughput %.0f/s  ack p99 %s  e2e leading p50 %s p99 %s  wakes/event %.4f (oracle %.4f)  uncovered %d  duplicates %d  provider errors %d  ClickHouse agrees %v\n",
		sum.Throughput, sum.Ack.P99, sum.E2ELeading.P50, sum.E2ELeading.P99, sum.WakesPerEvent, sum.OraclePerEvent,
		sum.Uncovered, sum.DuplicateIDs, sum.ProviderErrors, sum.ClickHouse.Agree)
	if len(sum.Failures) > 0 {
		for _, f := range sum.Failures {
			fmt.Fprintln(os.Stderr, "FAIL:", f)
		}
		return 1
	}
	fmt.Println("PASS")
	return 0
}
