package clickhouse

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Analyst queries: queries/<name>.sql, each starting with a comment that says what it answers
// and which ClickHouse query parameters ({name:Type}) it takes. They name tables without a
// database: run them with the wakepush database as the session's database
// (clickhouse client --database wakepush --param_from=… --queries-file queries/x.sql).
//
//go:embed queries/*.sql
var queryFS embed.FS

// Queries returns the names of the analyst queries (file names without .sql), sorted.
func Queries() []string {
	entries, err := fs.ReadDir(queryFS, "queries")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".sql"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Query returns the text of the analyst query name ("latency_quantiles" or
// "latency_quantiles.sql").
func Query(name string) (string, error) {
	name = strings.TrimSuffix(name, ".sql")
	if name == "" || strings.ContainsAny(name, `/\`) {
		return "", fmt.Errorf("no query %q (have %s)", name, strings.Join(Queries(), ", "))
	}
	b, err := queryFS.ReadFile("queries/" + name + ".sql")
	if err != nil {
		return "", fmt.Errorf("no query %q (have %s)", name, strings.Join(Queries(), ", "))
	}
	return string(b), nil
}
