// Command chatty is a test program for stacktest's Process: it prints lines
// on stdout and stderr, optionally serves HTTP, and exits 0 on SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	every := flag.Duration("every", 0, "print a tick line at this interval")
	httpAddr := flag.String("http", "", "serve GET /healthz here")
	readyAfter := flag.Duration("ready-after", 0, "answer /healthz with 503 until this much time has passed")
	exitCode := flag.Int("exit", -1, "exit with this code right away")
	race := flag.Bool("race", false, "commit a data race (detected when built with -race)")
	flag.Parse()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	fmt.Println("hello from stdout")
	fmt.Fprintln(os.Stderr, "hello from stderr")
	fmt.Printf("env WAKEPUSH_TEST=%s\n", os.Getenv("WAKEPUSH_TEST"))
	fmt.Print("no trailing newline")
	if *race {
		n := 0
		done := make(chan bool)
		go func() { n++; done <- true }()
		n++
		<-done
		fmt.Println("raced", n)
	}
	if *exitCode >= 0 {
		os.Exit(*exitCode)
	}
	fmt.Println()

	start := time.Now()
	if *httpAddr != "" {
		http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if time.Since(start) < *readyAfter {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		go func() {
			if err := http.ListenAndServe(*httpAddr, nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}()
	}
	var tick <-chan time.Time
	if *every > 0 {
		tick = time.Tick(*every)
	}
	for i := 0; ; i++ {
		select {
		case <-sig:
			fmt.Println("got SIGTERM, bye")
			os.Exit(0)
		case <-tick:
			fmt.Printf("tick %d\n", i)
		}
	}
}
