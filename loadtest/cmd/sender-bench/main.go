// Command sender-bench measures the CPU the wakepush sender binary spends per delivered APNs
// push next to a bare sideshow/apns2 client loop sending the same pushes (package
// loadtest/senderbench; loadtest/README.md, "Sender vs bare apns2").
//
//	go run ./loadtest/cmd/sender-bench [-devices 100000] [-runs 3] [-concurrency 64] [-conns 1]
//	    [-mock-latency 0] [-targets sender,bare-apns2] [-json FILE] [-dir DIR] [-keep] [-sender-bin FILE]
//
// It builds the sender (without -race), the Kafka broker and the APNs mock, runs each as a child
// process, and prints a markdown table. Exit status 0: every push was delivered exactly once
// with a 200; 1: a push was lost, duplicated, refused or differed from the sender's; 2: the
// benchmark could not be carried out. Run it from inside the repository (it builds from the
// workspace).
//
// With -bare-apns2 as its first argument it is the benchmark's bare apns2 child instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/loadtest/procs"
	"github.com/wakepush/wakepush/loadtest/senderbench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == senderbench.BareFlag {
		os.Exit(senderbench.BareMain(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("sender-bench", flag.ContinueOnError)
	devices := fs.Int("devices", 100_000, "pre-registered iOS devices, one wake (push) each")
	runs := fs.Int("runs", 3, "runs; each measures every target once, alternating which goes first")
	concurrency := fs.Int("concurrency", 64, "the sender's WAKEPUSH_SENDER_CONCURRENCY and the bare loop's goroutines")
	conns := fs.Int("conns", 1, "APNs HTTP/2 connections (WAKEPUSH_SENDER_APNS_CONNECTIONS; bare apns2 clients)")
	latency := fs.Duration("mock-latency", 0, "latency the APNs mock adds to every push")
	targets := fs.String("targets", senderbench.TargetSender+","+senderbench.TargetBare, "comma-separated: sender, bare-apns2")
	seed := fs.Int64("seed", 1, "devices and tokens (same seed, same devices)")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	dir := fs.String("dir", "", "directory for the logs, keys and apps files (default: a temporary one, removed unless the benchmark fails or -keep)")
	keep := fs.Bool("keep", false, "keep the temporary directory")
	stall := fs.Duration("stall-timeout", time.Minute, "fail a sender run that makes no progress for this long")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	senderBin := fs.String("sender-bin", "", "measure this sender binary instead of building services/sender from the workspace")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sender-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "sender-bench:", err)
		return 2
	}
	root, err := procs.RepoRoot(".")
	if err != nil {
		return fail(err)
	}
	workDir := *dir
	if workDir == "" {
		if workDir, err = os.MkdirTemp("", "sender-bench-"); err != nil {
			return fail(err)
		}
	}
	binDir := filepath.Join(workDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := senderbench.Options{
		Devices: *devices, Runs: *runs, Concurrency: *concurrency, Conns: *conns, MockLatency: *latency,
		Targets: strings.Split(*targets, ","), Seed: *seed, Dir: workDir,
		Build: procs.GoBuild(root, binDir, false), BareBinary: self, SenderBinary: *senderBin, StallTimeout: *stall,
	}
	if !*quiet {
		opts.Logf = func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "sender-bench: "+format+"\n", args...)
		}
	}
	rep, err := senderbench.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sender-bench: %v (files in %s)\n", err, workDir)
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
		fmt.Fprintf(os.Stderr, "sender-bench: FAIL (files in %s)\n", workDir)
		return 1
	}
	if *dir == "" && !*keep {
		os.RemoveAll(workDir)
	}
	return 0
}
