// Command sender-memory measures the memory of wakepush sender instances by registered devices
// and instance count, and whether a rebalance makes a wake wait for more than its partition's
// load (package loadtest/sendermemory; loadtest/README.md, "Memory per instance").
//
//	go run ./loadtest/cmd/sender-memory [-devices 1000000[,10000000]] [-instances 1,2,4] [-partitions 12]
//	    [-retain 10s] [-json FILE] [-dir DIR] [-keep] [-sender-bin FILE]
//
// It builds the sender (without -race), the Kafka broker and the APNs mock, runs each as a child
// process and prints a markdown table. Exit status 0: measured, every wake of the rebalance
// check pushed once; 1: a wake was lost or pushed twice, or a sender exited or had to be killed;
// 2: the measurement could not be carried out. Run it from inside the repository.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/loadtest/procs"
	"github.com/wakepush/wakepush/loadtest/sendermemory"
)

func main() { os.Exit(run()) }

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.ReplaceAll(strings.TrimSpace(f), "_", "")
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func run() int {
	fs := flag.NewFlagSet("sender-memory", flag.ContinueOnError)
	devices := fs.String("devices", "1000000", "comma-separated registered device counts, ascending (produced incrementally)")
	instances := fs.String("instances", "1,2,4", "comma-separated sender group sizes measured at every device count")
	partitions := fs.Int("partitions", 12, "partitions of every topic (WAKEPUSH_KAFKA_PARTITIONS)")
	retain := fs.Duration("retain", 10*time.Second, "the senders' WAKEPUSH_SENDER_REGISTRY_RETAIN")
	stableFor := fs.Duration("stable-for", 5*time.Second, "how long the group's device counts must stay unchanged before measuring")
	stableTimeout := fs.Duration("stable-timeout", 20*time.Minute, "give up when a group is not stable after this long")
	sequential := fs.Bool("sequential", false, "start a group's instances one after the other, each once the previous one is ready (default: all at once)")
	readyGrace := fs.Duration("ready-grace", 30*time.Second, "measure a group whose devices and partitions are settled after -stable-for plus this even if an instance is not ready (reported as a failure)")
	noBaseline := fs.Bool("no-baseline", false, "skip the baseline (one sender, no devices)")
	noRebalance := fs.Bool("no-rebalance", false, "skip the rebalance check (a third instance joining two)")
	seed := fs.Int64("seed", 1, "devices and tokens (same seed, same devices)")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	dir := fs.String("dir", "", "directory for the logs, key and apps file (default: a temporary one, removed unless it fails or -keep)")
	keep := fs.Bool("keep", false, "keep the temporary directory")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	senderBin := fs.String("sender-bin", "", "measure this sender binary instead of building services/sender from the workspace")
	render := fs.String("render", "", "only print the markdown of a report written with -json before")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "sender-memory:", err)
		return 2
	}
	if *render != "" {
		rep, err := sendermemory.ReadJSON(*render)
		if err != nil {
			return fail(err)
		}
		if err := rep.WriteMarkdown(os.Stdout); err != nil {
			return fail(err)
		}
		return 0
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	devs, err := ints(*devices)
	if err != nil {
		return fail(fmt.Errorf("-devices: %w", err))
	}
	ks, err := ints(*instances)
	if err != nil {
		return fail(fmt.Errorf("-instances: %w", err))
	}
	root, err := procs.RepoRoot(".")
	if err != nil {
		return fail(err)
	}
	workDir := *dir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "sender-memory-"); err != nil {
			return fail(err)
		}
	}
	binDir := filepath.Join(workDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := sendermemory.Options{
		Devices: devs, Instances: ks, Partitions: *partitions, Retain: *retain, StableFor: *stableFor, StableTimeout: *stableTimeout,
		ReadyGrace: *readyGrace, Sequential: *sequential,
		NoBaseline: *noBaseline, NoRebalance: *noRebalance, Seed: *seed, Dir: workDir,
		Build: procs.GoBuild(root, binDir, false), SenderBinary: *senderBin,
	}
	if !*quiet {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "sender-memory: %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
	rep, err := sendermemory.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sender-memory: %v (files in %s)\n", err, workDir)
		return 2
	}
	if err := rep.WriteMarkdown(os.Stdout); err != nil {
		return fail(err)
	}
	if *jsonOut != "" {
		if err := rep.WriteJSON(*jsonOut); err != nil {
			return fail(err)
		}
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(os.Stderr, "sender-memory: FAIL (files in %s)\n", workDir)
		return 1
	}
	if *dir == "" && !*keep {
		os.RemoveAll(workDir)
	}
	return 0
}
