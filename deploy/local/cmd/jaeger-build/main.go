// Command jaeger-build builds the pinned Jaeger all-in-one (package jaeger) into the user cache
// once and prints its path; `make jaeger` runs it. A cold build takes ~8 min and ~2.2 GB of
// memory on the 2-core dev machine (nice -n 10); when the binary is cached it returns at once.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/deploy/local/jaeger"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "jaeger-build:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if bin, ok := jaeger.Cached(); ok {
		fmt.Println(bin)
		return nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := jaeger.FindRoot(wd)
	if err != nil {
		return err
	}
	if v, err := jaeger.ToolsModuleVersion(root); err != nil || v != jaeger.Version {
		return fmt.Errorf("%s requires Jaeger %q (%v), package jaeger pins %s", jaeger.ModuleDir, v, err, jaeger.Version)
	}
	fmt.Fprintf(os.Stderr, "jaeger-build: building Jaeger %s from %s with GOWORK=off, nice -n 10 (~8 min and ~2.2 GB the first time)\n", jaeger.Version, jaeger.ModuleDir)
	began := time.Now()
	bin, err := jaeger.Build(ctx, root, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "jaeger-build: built in %s\n", time.Since(began).Round(time.Second))
	fmt.Println(bin)
	return nil
}
