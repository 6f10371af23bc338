// Command kafka-ceiling measures the raw Kafka ceiling of the pipeline on this machine: records
// of the pipeline's sizes through an in-process kfake broker along the same three
// produce/consume hops (events → wakes → deliveries) with the services' kafka-go settings. See
// package loadtest/ceiling.
//
//	go run ./loadtest/cmd/kafka-ceiling -records 250000 [-pipeline 4000] [-json out.json]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/wakepush/wakepush/loadtest/ceiling"
)

func main() {
	var opts ceiling.Options
	flag.IntVar(&opts.Records, "records", 250000, "records per hop")
	flag.IntVar(&opts.Partitions, "partitions", 4, "partitions per topic")
	flag.IntVar(&opts.Sizes[0], "event-bytes", 200, "value size of an event record")
	flag.IntVar(&opts.Sizes[1], "wake-bytes", 190, "value size of a wake record")
	flag.IntVar(&opts.Sizes[2], "delivery-bytes", 200, "value size of a delivery record")
	flag.IntVar(&opts.Producers, "producers", 256, "concurrent single-record producers at the source")
	flag.StringVar(&opts.BrokerAddr, "broker", "", "use this broker instead of an in-process kfake")
	pipeline := flag.Float64("pipeline", 0, "a measured pipeline rate (publishes/s, e.g. the find-max report's sustained maximum) to express as a fraction of the ceiling (0: none)")
	jsonOut := flag.String("json", "", "also write the result as JSON to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := ceiling.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafka-ceiling:", err)
		os.Exit(1)
	}
	fmt.Print(ceiling.Format(res, *pipeline))
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "kafka-ceiling:", err)
			os.Exit(1)
		}
	}
}
