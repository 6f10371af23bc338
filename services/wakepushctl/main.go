// Command wakepushctl is the operator's and analyst's command line for a running wakepush:
//
//	wakepushctl demo                 register a fake iOS device, publish once, show the push and the rows
//	wakepushctl queries              list the analyst queries shipped in schemas/clickhouse/queries
//	wakepushctl query NAME [k=v …]   run one of them against ClickHouse
//	wakepushctl stats [flags]        events, wakes, delivered share, lost events, latencies, outcomes
//	wakepushctl dashboard [flags]    a ClickHouse /dashboard URL with wakepush's panels
//	wakepushctl migrate [flags]      create/update the Kafka topics and migrate the ClickHouse schema
//	wakepushctl check [flags]        check that Kafka and ClickHouse are reachable and migrated
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
	case "migrate":
		return migrate(ctx, args[1:])
	case "check":
		return check(ctx, args[1:])
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
  migrate [flags]      create or update every Kafka topic and apply the ClickHouse migrations,
                       idempotently, waiting up to -timeout (5m) for both to come up; prints each
                       change (-kafka-only, -clickhouse-only, -add-partitions). The Helm hook Job
  check [flags]        read-only: every topic exists with its partition count, ClickHouse answers,
                       its schema is at the latest migration, every table is readable; one line
                       per check, non-zero exit when any fails (-kafka-only, -clickhouse-only,
                       -timeout 30s). The Helm test

run "wakepushctl <command> -h" for the command's flags.
`

func usageError() error {
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown or missing command")
}
