package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/services/internal/clickhousex"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/redact"
)

// listQueries prints each analyst query with the first line of its comment and its parameters:
// name, type, default and meaning.
func listQueries(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, name := range chschema.Queries() {
		q, err := chschema.LoadQuery(name)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, q.Summary)
		for _, p := range q.Params {
			fmt.Fprintf(tw, "  %s\t%s = %s\t%s\n", p.Name, p.Type, p.Default, p.Doc)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Run one with wakepushctl query NAME [name=value ...]; every parameter has its default.")
	fmt.Fprintln(tw, "Times: 1h (an hour ago), now, now-15m, RFC 3339 or 2006-01-02 15:04:05 (UTC); *_ms/*_s")
	fmt.Fprintln(tw, "parameters also take durations, and slack=5s stands for slack_ms=5000.")
	return tw.Flush()
}

// chSettings are how the query commands reach ClickHouse: the DSN (a secret: environment or
// file only) and the same TLS and credential settings as the recorder's (clickhousex).
type chSettings struct {
	dsn string
	sec clickhousex.Config
}

func (c *chSettings) register(s *config.Set) {
	s.Secret(&c.dsn, "WAKEPUSH_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:19000/wakepush", "ClickHouse DSN (native protocol; may carry credentials)")
	c.sec.Register(s)
}

// open connects; errors never show the password.
func (c *chSettings) open() (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN(c.dsn)
	if err != nil {
		return nil, fmt.Errorf("WAKEPUSH_CLICKHOUSE_DSN: %w", redact.Error(err)) // url.Parse quotes the DSN
	}
	if err := c.sec.Apply(opts); err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", redact.Error(err, opts.Auth.Password))
	}
	return conn, nil
}

func runQuery(ctx context.Context, args []string) error { return runQueryTo(ctx, os.Stdout, args) }

func runQueryTo(ctx context.Context, w io.Writer, args []string) error {
	var ch chSettings
	s := config.New("wakepushctl query")
	ch.register(s)
	// Flags first, then NAME and k=v parameters.
	var rest []string
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			rest = args[i:]
			args = args[:i]
			break
		}
	}
	if err := s.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(rest) == 0 {
		return fmt.Errorf("query: name the query (wakepushctl queries lists them)")
	}
	q, err := chschema.LoadQuery(rest[0])
	if err != nil {
		return err
	}
	args2 := map[string]string{}
	for _, kv := range rest[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("query: parameter %q: want name=value", kv)
		}
		args2[k] = v
	}
	conn, err := ch.open() // before the parameters: a broken DSN is reported first
	if err != nil {
		return err
	}
	defer conn.Close()
	params, err := q.Bind(args2, time.Now())
	if err != nil {
		return fmt.Errorf("query %s: %w (wakepushctl queries lists the parameters)", q.Name, err)
	}
	rows, err := conn.Query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), q.Text)
	if err != nil {
		return fmt.Errorf("run %s: %w", q.Name, err)
	}
	defer rows.Close()
	return printRows(w, rows)
}

// printRows writes a header and one tab-aligned line per row, whatever the column types.
func printRows(w io.Writer, rows driver.Rows) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(rows.Columns(), "\t"))
	types := rows.ColumnTypes()
	dest := make([]any, len(types))
	for rows.Next() {
		for i, t := range types {
			dest[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		cells := make([]string, len(dest))
		for i, d := range dest {
			cells[i] = formatCell(reflect.ValueOf(d).Elem())
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return tw.Flush()
}

func formatCell(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "NULL"
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.000")
	case time.Duration:
		return x.String()
	}
	return fmt.Sprint(v.Interface())
}
