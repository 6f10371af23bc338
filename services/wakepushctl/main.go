// Command wakepushctl is the operator's and analyst's command line for a running wakepush:
//
//	wakepushctl demo                 register a fake iOS device, publish once, show the push and the rows
//	wakepushctl queries              list the analyst queries shipped in schemas/clickhouse/queries
//	wakepushctl query NAME [k=v …]   run one of them against ClickHouse
//	wakepushctl stats [flags]        events, wakes, delivered share, lost events, latencies, outcomes
//	wakepushctl dashboard [flags]    a ClickHouse /dashboard URL with wakepush's panels
//
// Settings come from flags or the environment, defaulting to the local dev stack (`make run`).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "wakepushctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError()
	}
	switch args[0] {
	case "demo":
		return demo(ctx, args[1:])
	case "queries":
		return listQueries(os.Stdout)
	case "query":
		return runQuery(ctx, args[1:])
	case "stats":
		return stats(ctx, args[1:])
	case "dashboard":
		return dashboard(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	return usageError()
}

const usage = `usage: wakepushctl <command> [flags]

commands:
  demo                 register a fake iOS device, send one publish, print the push the APNs mock
                       received and the rows ClickHouse holds (needs ` + "`make run`" + `)
  queries              list the analyst queries with their parameters and defaults
  query NAME [k=v ...] run an analyst query; parameters default (last hour, all apps), e.g.
                       query uncovered_events slack=5s
  stats [flags]        events, wakes, delivered share, uncovered events, latency per stage and
                       outcomes, per app, platform and XMPP server (-since 1h -until now -app ""
                       -format table|json|csv)
  dashboard [flags]    print (or -open) a ClickHouse /dashboard URL with wakepush's panels

run "wakepushctl <command> -h" for the command's flags.
`

func usageError() error {
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown or missing command")
}
