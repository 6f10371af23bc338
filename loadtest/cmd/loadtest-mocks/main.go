// Command loadtest-mocks runs the load test's two provider mocks (APNs and FCM) in a process of
// their own, so that the load test reports their CPU apart from the generator's
// (loadtest/mockhost). The runner starts it; it is not meant to be run by hand.
//
//	loadtest-mocks -config mocks.json -ready ready.json [-pprof 127.0.0.1:PORT]
//
// It reads a mockhost.Config (JSON), starts the mocks, writes where they listen and its control
// API's address to the ready file, and serves until SIGTERM or SIGINT. With -pprof it also serves
// net/http/pprof there (the runner asks for it with -profile).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wakepush/wakepush/loadtest/mockhost"
)

func main() {
	config := flag.String("config", "", "mockhost.Config as a JSON file")
	ready := flag.String("ready", "", "write the listen addresses here (JSON) once serving")
	pprofAddr := flag.String("pprof", "", "serve /debug/pprof/ on this loopback address (off when empty)")
	flag.Parse()
	if *config == "" || *ready == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: loadtest-mocks -config FILE -ready FILE [-pprof ADDR]")
		os.Exit(2)
	}
	b, err := os.ReadFile(*config)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest-mocks:", err)
		os.Exit(1)
	}
	var cfg mockhost.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest-mocks: config:", err)
		os.Exit(1)
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest-mocks: pprof:", err)
			os.Exit(1)
		}
		// http.DefaultServeMux carries net/http/pprof's handlers (imported for them); the
		// server ends with the process.
		srv := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := mockhost.Serve(ctx, cfg, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest-mocks:", err)
		os.Exit(1)
	}
}
