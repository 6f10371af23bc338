package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	chschema "github.com/wakepush/wakepush/schemas/clickhouse"
	"github.com/wakepush/wakepush/services/internal/config"
	"github.com/wakepush/wakepush/services/internal/redact"
)

// listQueries prints each analyst query with the first line of its comment.
func listQueries(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, name := range chschema.Queries() {
		text, err := chschema.Query(name)
		if err != nil {
			return err
		}
		first, _, _ := strings.Cut(text, "\n")
		first = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(first, "--"), " "+name+":"))
		fmt.Fprintf(tw, "%s\t%s\n", name, strings.TrimPrefix(first, name+": "))
	}
	return tw.Flush()
}

var paramRE = regexp.MustCompile(`\{(\w+):[^}]+\}`)

// queryParams returns the names of the query parameters a query text uses, in order of first use.
func queryParams(text string) []string {
	var names []string
	seen := map[string]bool{}
	for _, m := range paramRE.FindAllStringSubmatch(text, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			names = append(names, m[1])
		}
	}
	return names
}

// defaultParam gives the parameters every analyst would otherwise type each time: the last hour,
// all apps.
func defaultParam(name string, now time.Time) (string, bool) {
	switch name {
	case "from":
		return now.Add(-time.Hour).UTC().Format("2006-01-02 15:04:05.000"), true
	case "to":
		return now.UTC().Format("2006-01-02 15:04:05.000"), true
	case "app":
		return "", true
	}
	return "", false
}

func runQuery(ctx context.Context, args []string) error {
	var dsn string
	s := config.New("wakepushctl query")
	s.Secret(&dsn, "WAKEPUSH_CLICKHOUSE_DSN", "clickhouse://127.0.0.1:19000/wakepush", "ClickHouse DSN (native protocol; may carry credentials)")
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
	text, err := chschema.Query(rest[0])
	if err != nil {
		return err
	}
	params := map[string]string{}
	for _, kv := range rest[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("query: parameter %q: want name=value", kv)
		}
		params[k] = v
	}
	var missing []string
	now := time.Now()
	for _, p := range queryParams(text) {
		if _, ok := params[p]; ok {
			continue
		}
		if v, ok := defaultParam(p, now); ok {
			params[p] = v
			continue
		}
		missing = append(missing, p)
	}
	if len(missing) > 0 {
		return fmt.Errorf("query %s needs parameters %s (see its comment: wakepushctl queries)", rest[0], strings.Join(missing, ", "))
	}

	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return fmt.Errorf("WAKEPUSH_CLICKHOUSE_DSN: %w", redact.Error(err)) // url.Parse quotes the DSN
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return fmt.Errorf("clickhouse: %w", redact.Error(err, opts.Auth.Password))
	}
	defer conn.Close()
	rows, err := conn.Query(clickhouse.Context(ctx, clickhouse.WithParameters(params)), text)
	if err != nil {
		return fmt.Errorf("run %s: %w", rest[0], err)
	}
	defer rows.Close()
	return printRows(os.Stdout, rows)
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
