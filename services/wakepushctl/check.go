package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/schemas/topics"
	"github.com/wakepush/wakepush/services/internal/kafkax"
)

// check is `wakepushctl check`, the Helm chart's `helm test`: it reads, and changes nothing, so it
// works with read-only rights (Describe on the topics, SELECT on the database). One line per
// check; an error when any failed.
func check(ctx context.Context, args []string) error { return checkTo(ctx, os.Stdout, args) }

func checkTo(ctx context.Context, w io.Writer, args []string) error {
	c, err := parseInfra("check", args, false)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	var failed []string
	report := func(name string, err error, okDetail string) {
		if err != nil {
			failed = append(failed, name)
			fmt.Fprintf(w, "FAIL  %s: %v\n", name, err)
			return
		}
		fmt.Fprintf(w, "ok    %s: %s\n", name, okDetail)
	}
	if !c.o.ClickHouseOnly {
		checkKafka(ctx, &c.kafka, report)
	}
	if !c.o.KafkaOnly {
		c.ch.check(ctx, report)
	}
	if len(failed) > 0 {
		return fmt.Errorf("check: %d failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

type reportFunc func(name string, err error, okDetail string)

// checkKafka reads the metadata of every wakepush topic: it exists with the configured
// partition count (what the services require to start).
func checkKafka(ctx context.Context, cfg *kafkax.Config, report reportFunc) {
	client, err := cfg.Client()
	if err != nil {
		report("kafka", err, "")
		return
	}
	defer kafkax.CloseClient(client)
	status, err := topics.Verify(ctx, client, cfg.Layout(), topics.All...)
	if err != nil {
		report("kafka "+strings.Join(cfg.Brokers, ","), err, "")
		return
	}
	for _, st := range status {
		err := st.Err
		if err != nil {
			err = errors.New(strings.TrimPrefix(err.Error(), topics.ErrNotReady.Error()+": "+st.Name+" "))
		}
		report("kafka topic "+st.Name, err, fmt.Sprintf("%d partitions", st.Partitions))
	}
}

// check pings ClickHouse, compares the schema version with the latest migration and reads
// nothing from each table (SELECT 1 … LIMIT 0: the rights and the table, not the data).
func (c *chSettings) check(ctx context.Context, report reportFunc) {
	conn, db, addr, err := c.adminConn()
	if err != nil {
		report("clickhouse", err, "")
		return
	}
	defer conn.Close()
	if err := conn.Ping(ctx); err != nil {
		report("clickhouse ping "+addr, err, "")
		return
	}
	report("clickhouse ping "+addr, nil, "answers")
	latest, err := chschema.Latest()
	if err != nil {
		report("clickhouse schema "+db, err, "")
		return
	}
	pending, err := chschema.Status(ctx, conn, db)
	if err == nil && len(pending) > 0 {
		names := make([]string, len(pending))
		for i, m := range pending {
			names[i] = m.String()
		}
		err = fmt.Errorf("not applied: %s (run wakepushctl migrate)", strings.Join(names, ", "))
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) && (ex.Code == 60 || ex.Code == 81) { // UNKNOWN_TABLE, UNKNOWN_DATABASE
		err = fmt.Errorf("not migrated: no %s.%s (run wakepushctl migrate)", db, chschema.MigrationsTable)
	}
	report("clickhouse schema "+db, err, "at "+latest.String())
	if err != nil && len(pending) == 0 {
		return // no schema to read tables of, or no rights
	}
	tables, err := chschema.Tables()
	if err != nil {
		report("clickhouse tables", err, "")
		return
	}
	for _, t := range tables {
		rows, err := conn.Query(ctx, "SELECT 1 FROM `"+db+"`.`"+t+"` LIMIT 0")
		if err == nil {
			err = rows.Err()
			rows.Close()
		}
		report("clickhouse select "+db+"."+t, err, "readable")
	}
}
