package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wakepush/wakepush/deploy/local/jaeger"
)

// Trace modes (-traces, WAKEPUSH_DEV_TRACES): what the stack does about Jaeger.
const (
	// tracesAuto: start Jaeger when its binary is in the user cache; otherwise start the stack
	// without traces at once and build Jaeger in the background (nice -n 10, ~8 min cold), so
	// that the next `make run` has traces. `make run` never waits for the build.
	tracesAuto = "auto"
	// tracesWait: build Jaeger first when it is missing (in the foreground), then start it.
	tracesWait = "wait"
	// tracesOff: no Jaeger, no build, no OTLP export.
	tracesOff = "off"
)

// planTraces decides whether the selected components include Jaeger and, in auto mode with no
// cached binary, starts the background build. It returns the components to start.
func (s *stack) planTraces(ctx context.Context, cs []component) ([]component, error) {
	i := slices.IndexFunc(cs, func(c component) bool { return c.name == "jaeger" })
	if i < 0 {
		return cs, nil // -only without jaeger
	}
	without := slices.Delete(slices.Clone(cs), i, i+1)
	if s.opts.traces == tracesOff {
		s.logf("traces: off (-traces=off): no Jaeger, the services export no spans")
		return without, nil
	}
	if bin, ok := jaeger.Cached(); ok {
		s.vars["jaeger-bin"] = bin
		s.traces = true
		return cs, nil
	}
	if s.opts.traces == tracesWait {
		s.logf("traces: building Jaeger %s first (-traces=wait; ~8 min cold, nice -n 10)", jaeger.Version)
		began := time.Now()
		w := s.out.writer("jaeger-build")
		bin, err := jaeger.Build(ctx, s.opts.root, w)
		w.Flush()
		if err != nil {
			return nil, err
		}
		s.logf("traces: built Jaeger in %s: %s", time.Since(began).Round(time.Second), bin)
		s.vars["jaeger-bin"] = bin
		s.traces = true
		return cs, nil
	}
	s.startBackgroundBuild(ctx)
	return without, nil
}

// startBackgroundBuild builds Jaeger while the stack runs without traces. The build stops with
// the stack (what it compiled stays in the go build cache and the next run goes on from there).
func (s *stack) startBackgroundBuild(ctx context.Context) {
	logPath := filepath.Join(s.opts.data, "jaeger-build.log")
	bin, _ := jaeger.BinaryPath()
	s.logf("traces: Jaeger %s is not built yet, so this run has no traces. Building it in the background "+
		"(nice -n 10, ~8 min and ~2.2 GB of memory the first time; log %s) into %s; "+
		"restart `make run` once it is done. -traces=wait builds first, -traces=off skips this.",
		jaeger.Version, logPath, bin)
	if err := os.MkdirAll(s.opts.data, 0o755); err != nil {
		s.logf("traces: background build not started: %v", err)
		return
	}
	f, err := os.Create(logPath)
	if err != nil {
		s.logf("traces: background build not started: %v", err)
		return
	}
	s.builds.Add(1)
	go func() {
		defer s.builds.Done()
		defer f.Close()
		began := time.Now()
		_, err := jaeger.Build(ctx, s.opts.root, f)
		switch {
		case err == nil:
			s.logf("traces: Jaeger built in %s. Restart `make run` (Ctrl-C, then make run) to get traces.", time.Since(began).Round(time.Second))
		case ctx.Err() != nil:
			s.logf("traces: Jaeger build stopped with the stack; the next `make run` (or `make jaeger`) goes on from the go build cache")
		default:
			s.logf("traces: Jaeger build failed after %s: %v (log %s)", time.Since(began).Round(time.Second), err, logPath)
		}
	}()
}

// prepareJaeger writes Jaeger's configuration with the stack's ports.
func prepareJaeger(_ context.Context, s *stack) error {
	dir := filepath.Join(s.opts.data, "jaeger")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	port := func(name string) int {
		var p int
		fmt.Sscan(s.expand("{port:"+name+"}"), &p)
		return p
	}
	_, err := jaeger.WriteConfig(dir, jaeger.Ports{
		OTLPHTTP:  port("jaeger-otlp"),
		QueryHTTP: port("jaeger-query"),
		QueryGRPC: port("jaeger-grpc"),
		Health:    port("jaeger-health"),
	})
	return err
}

// tracesSummary is the line printed once the stack is up.
func (s *stack) tracesSummary() string {
	if !s.traces {
		return ""
	}
	q := s.expand("http://{addr:jaeger-query}")
	return strings.Join([]string{
		"traces: Jaeger at " + q + " (query API: " + q + "/api/v3/traces/<trace id>, " + q + "/api/v3/services; ",
		"the Go-built Jaeger serves no web UI, docs/tracing.md); `make demo-push` prints its trace",
	}, "")
}
